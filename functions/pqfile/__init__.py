"""PQFile: post-quantum document encryption (PQF v1 packages, see docs/FORMAT.md)."""

__version__ = "0.1.0"
