"""The ``file_system`` backend: files on a local (or mounted) disk.

Registered under the entry-point group ``pywharf.backends`` exactly as a third-party
backend would be.
"""

from pywharf_core.backend import BackendSpec

from .storage import FileSystemBackend, FileSystemConfig, create

SPEC = BackendSpec(type="file_system", config_class=FileSystemConfig, create=create)

__all__ = ["SPEC", "FileSystemBackend", "FileSystemConfig"]
