"""Two processes that start from the same initialised memory must not produce the same
randomness (issue 15: Lambda SnapStart restores many environments from one snapshot, with
OpenSSL's generator state inside it; batch mode forks workers after loading the key).

A restore is simulated by os.fork() after "init": the parent loads a recipient key and
uses every generator once (HPKE encapsulation, key generation, os.urandom), so their state
is in the copied memory; then two children each encapsulate to the same key, seal a
package header, draw the per-package randomness and generate a key pair. Every one of
those values must differ between the children (and from the parent's next ones).

What this does not show: fork() runs OpenSSL's at-fork handlers and changes the pid; a
snapshot restore does neither. docs/OPERATIONS.md ("SnapStart") draws the consequence.
"""

from __future__ import annotations

import os
import pickle

import pytest

from pqfile.crypto import envelope
from pqfile.crypto.kem import PublicKey, Suite, generate
from pqfile.crypto.keyschedule import Kdf
from pqfile.crypto.wrap import hpke_info, hpke_wrap

DATA_KEY = bytes(range(32))
INFO = hpke_info(b"core", bytes(16), Kdf.for_suite(Suite.XWING))


def _draw(recipient: PublicKey) -> dict[str, bytes]:
    enc, wrapped = hpke_wrap(DATA_KEY, recipient, INFO)
    randomness = envelope.Randomness.fresh()
    package = envelope.encrypt_bytes(b"same plaintext", recipient)
    return {
        "enc": enc,
        "wrapped": wrapped,
        "data_key": randomness.data_key,
        "salt": randomness.salt,
        "nonce_prefix": randomness.nonce_prefix,
        "package": bytes(package),
        "keygen": generate(recipient.suite).public_key().key_id_bytes,
    }


def _in_child(recipient: PublicKey) -> dict[str, bytes]:
    """Fork; the child draws and sends its values through a pipe, then exits at once."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read_end)
            with os.fdopen(write_end, "wb") as out:
                pickle.dump(_draw(recipient), out)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as src:
        values: dict[str, bytes] = pickle.loads(src.read())  # our own child wrote it
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return values


@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.value)
def test_two_restores_encapsulate_differently(suite: Suite) -> None:
    recipient = generate(suite).public_key()
    _draw(recipient)  # "init": every generator used once before the snapshot
    first, second = _in_child(recipient), _in_child(recipient)
    parent = _draw(recipient)
    for name in first:
        assert len({first[name], second[name], parent[name]}) == 3, name
    # Same key, same data key, different encapsulations: the wrapped keys differ too.
    assert first["enc"] != second["enc"] and first["wrapped"] != second["wrapped"]
