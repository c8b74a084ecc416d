"""Pure key-pool domain: key records, statuses, selection and rotation policy.

- :mod:`pqfile.keys.model`: ``KeyStatus`` (and its legal transitions), ``KeyRecord``.
- :mod:`pqfile.keys.policy`: ``PoolPolicy`` (refill target/floor, rotation by age and usage).
- :mod:`pqfile.keys.cache`: ``UnwrappedKeyCache`` (TTL + size cap for unwrapped secrets).
- :mod:`pqfile.keys.audit_chain`: the canonical row encoding and chain verification.

Nothing here imports pg8000 or boto3; docs/KEYS.md describes the lifecycle as built.
"""
