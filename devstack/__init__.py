"""The local stack: a throwaway PostgreSQL and the emulated AWS (moto server, patched).

Used by `make up` / `make down`, by the demo and by the integration tests. Never shipped
in a Lambda zip.
"""
