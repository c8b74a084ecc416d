"""Pure PQF v1 wire format: header dataclasses <-> bytes and limits (docs/FORMAT.md)."""
