"""The ``s3`` backend: packages and index in an S3 bucket (AWS S3 or compatible).

Needs boto3 (the ``s3`` extra: ``pip install '.[s3]'`` in a pywharf checkout), imported
only when a repository uses it.
Registered under the entry-point group ``pywharf.backends`` like any plugin.
"""

from pywharf_core.backend import BackendSpec

from .storage import S3Backend, S3Config, create

SPEC = BackendSpec(type="s3", config_class=S3Config, create=create)

__all__ = ["SPEC", "S3Backend", "S3Config"]
