"""pywharf: a private Python package index in front of pluggable storage backends."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pywharf")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
