"""The key-pool domain: key records, policy, custody and the services that apply them.

- :mod:`pqfile.keys.model`: ``KeyStatus``, ``Purpose`` (what each status allows),
  ``KeyRecord`` and the small records the repositories exchange.
- :mod:`pqfile.keys.policy`: ``PoolPolicy`` (refill target/floor, rotation by age and usage;
  its defaults are the pool's defaults everywhere).
- :mod:`pqfile.keys.custody`: ``KeyCustody`` (generate and wrap, unwrap for a purpose with
  the encryption context ``seed_context``).
- :mod:`pqfile.keys.cache`: ``UnwrappedKeyCache`` (TTL + size cap for unwrapped secrets).
- :mod:`pqfile.keys.pool`: ``KeyPool`` (ports.KeyStore: selection, refill, queueing for
  rotation, revoke/expire, status), over the repositories of ``ports.KeyStorage``.
- :mod:`pqfile.keys.rotation_runs`: ``RotationRuns`` (begin, record, finish a rotation run).
- :mod:`pqfile.keys.audit_chain`: the canonical row encoding and chain verification.

Nothing here imports pg8000 or boto3; docs/KEYS.md describes the lifecycle as built.
"""
