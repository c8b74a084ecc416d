"""Custody of secret keys (docs/KEYS.md, "Custody"): seeds exist in the clear only here.

A key's 32-byte seed is wrapped by the KMS port (``ports.SeedProtector``) under an
encryption context naming the key id and suite (:func:`seed_context`), so a wrapped seed
moved to another row does not unwrap. Unwrapping checks the key's status as read from the
database on this very call, then the cache, then KMS, and finally that the seed really is
the key it claims to be. Seeds never appear in ``repr``, logs or exceptions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pqfile.crypto import kem
from pqfile.errors import CustodyError, KeyNotFoundError, KeyNotUsableError, PQFileError
from pqfile.keys.cache import UnwrappedKeyCache
from pqfile.keys.model import KeyStatus, NewKey, Purpose, SealedSeed, usable_for

if TYPE_CHECKING:
    from pqfile.ports import SeedProtector


def seed_context(key_id: str, suite: str) -> dict[str, str]:
    """The KMS encryption context of a key's seed: binds the wrapped seed to its row."""
    return {"pqfile:purpose": "key-seed", "pqfile:key-id": key_id, "pqfile:suite": suite}


class KeyCustody:
    """Generates keys (seed wrapped at once) and unwraps them for a purpose, with a cache."""

    def __init__(
        self,
        protector: SeedProtector,
        cache: UnwrappedKeyCache[kem.SecretKey] | None = None,
    ) -> None:
        self._protector = protector
        self.cache: UnwrappedKeyCache[kem.SecretKey] = (
            cache if cache is not None else UnwrappedKeyCache()
        )

    def generate(self, suite: kem.Suite) -> NewKey:
        """A fresh key of ``suite``: its public key and its KMS-wrapped seed."""
        secret = kem.generate(suite)
        public = secret.public_key()
        wrapped, arn = self._protector.wrap(secret.seed, seed_context(public.key_id, suite.value))
        return NewKey(public.key_id, suite.value, public.raw, wrapped, arn)

    def unseal(self, key_id: str, sealed: SealedSeed | None, purpose: Purpose) -> kem.SecretKey:
        """The secret key of ``key_id`` for ``purpose``, from what the database holds now.

        Raise KeyNotFoundError (no such row), KeyNotUsableError (its status forbids the
        purpose: a revoked key is refused even while its secret sits in the cache, and is
        evicted) or CustodyError (KMS refused, or the seed is not this key's).
        """
        if sealed is None:
            raise KeyNotFoundError(f"no key {key_id}")
        if sealed.status in (KeyStatus.REVOKED, KeyStatus.SHREDDED):
            self.cache.discard(key_id)
        if not usable_for(sealed.status, purpose):
            raise KeyNotUsableError(
                f"key {key_id} is {sealed.status.value}: not usable to {purpose.value}"
            )
        cached = self.cache.get(key_id)
        if cached is not None:
            return cached
        suite = kem.Suite.from_name(sealed.suite)
        seed = self._protector.unwrap(sealed.wrapped_seed, seed_context(key_id, suite.value))
        try:
            secret = kem.secret_key_from_seed(suite, seed)
        except PQFileError:
            raise CustodyError(f"unwrapped seed for key {key_id} is malformed") from None
        if secret.public_key().key_id != key_id:
            raise CustodyError(f"unwrapped seed does not belong to key {key_id}")
        self.cache.put(key_id, secret)
        return secret

    def forget(self, key_id: str) -> None:
        """Drop a key's secret from the cache (it was just revoked)."""
        self.cache.discard(key_id)
