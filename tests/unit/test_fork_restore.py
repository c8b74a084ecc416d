"""Two processes that start from the same initialised memory must not produce the same
randomness (issue 15: Lambda SnapStart restores many environments from one snapshot, with
OpenSSL's generator state inside it; batch mode forks workers after loading the key).

A restore is simulated by os.fork() after "init": the parent loads a recipient key and
uses every generator once (HPKE encapsulation, key generation, os.urandom), so their state
is in the copied memory; then two children each encapsulate to the same key, seal a
package header, draw the per-package randomness and generate a key pair. Every one of
those values must differ between the children (and from the parent's next ones).

What this does not show: fork() changes the pid, and OpenSSL reseeds on a new pid; a
snapshot restore keeps it. The same-pid model below shows what a restore does instead, and
docs/OPERATIONS.md ("SnapStart") draws the consequence.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys

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


# A closer model of a restore: the same memory *and the same process id*. The parent runs as
# pid 1 of a new pid namespace, uses every generator ("init"), then each "restore" is a
# child forked into a namespace of its own, where it is pid 1 again. OpenSSL recognises a
# new process only by a changed getpid() (it has no snapshot or VM-generation detection), so
# this is what every SnapStart environment restored from one snapshot looks like to it.
# What the model cannot show: Python's own at-fork reseeding (the `random` module) still
# runs here, and a restore runs no at-fork handler at all.
_RESTORE_MODEL = r"""
import ctypes, json, os, ssl, sys
from pqfile.crypto import envelope
from pqfile.crypto.kem import Suite, generate
from pqfile.crypto.keyschedule import Kdf
from pqfile.crypto.wrap import hpke_info, hpke_wrap
from pqfile.handlers import _runtime

CLONE_NEWPID = 0x20000000
libc = ctypes.CDLL(None, use_errno=True)
recipient = generate(Suite(sys.argv[1])).public_key()
info = hpke_info(b"core", bytes(16), Kdf.for_suite(recipient.suite))


def draw(hook):
    if hook:
        _runtime.reseed_after_restore()
    enc, wrapped = hpke_wrap(bytes(32), recipient, info)
    randomness = envelope.Randomness.fresh()
    return {
        "pid": os.getpid(),
        "enc": enc.hex(),
        "wrapped": wrapped.hex(),
        "data_key": randomness.data_key.hex(),
        "nonce_prefix": randomness.nonce_prefix.hex(),
        "keygen": generate(recipient.suite).public_key().key_id_bytes.hex(),
        "runtime_openssl": ssl.RAND_bytes(16).hex(),
    }


draw(False)
assert os.getpid() == 1, os.getpid()


def restore(hook):
    read_end, write_end = os.pipe()
    helper = os.fork()
    if helper == 0:
        os.close(read_end)
        if libc.unshare(CLONE_NEWPID) != 0:
            os._exit(2)
        child = os.fork()
        if child == 0:
            with os.fdopen(write_end, "w") as out:
                out.write(json.dumps(draw(hook)))
            os._exit(0)
        _, status = os.waitpid(child, 0)
        os._exit(os.waitstatus_to_exitcode(status))
    os.close(write_end)
    with os.fdopen(read_end) as src:
        data = src.read()
    _, status = os.waitpid(helper, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
    return json.loads(data)


print(json.dumps({"plain": [restore(False), restore(False)],
                  "hooked": [restore(True), restore(True)]}))
"""


def _same_pid_restores(suite: Suite) -> dict[str, list[dict[str, object]]]:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        reason = "the same-pid restore model needs root and unshare (a pid namespace)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the restore model: {reason}")
        pytest.skip(reason)
    proc = subprocess.run(
        ["unshare", "--pid", "--fork", sys.executable, "-c", _RESTORE_MODEL, suite.value],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    runs: dict[str, list[dict[str, object]]] = json.loads(proc.stdout)
    return runs


@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.value)
def test_same_pid_restores_repeat_pyca_encapsulations(suite: Suite) -> None:
    """Why encrypt, the rotation functions and admin never use SnapStart: two restores of one
    snapshot encapsulate identically: two documents to one pool key would share the same
    `enc` (linkable) and HPKE shared secret, where the KEM's security assumes fresh
    randomness (with one info, even the wrapped key repeats, as here). The after-restore
    hook cannot reach the OpenSSL that pyca links into itself.
    If this ever fails, pyca's generator has learnt to notice a restore: revisit
    terraform/snapstart.tf with a test on a real restore."""
    runs = _same_pid_restores(suite)
    for mode in ("plain", "hooked"):
        first, second = runs[mode]
        assert first["pid"] == second["pid"] == 1
        assert first["enc"] == second["enc"], mode
        assert first["wrapped"] == second["wrapped"], mode


@pytest.mark.parametrize("suite", [Suite.XWING], ids=lambda s: s.value)
def test_same_pid_restores_draw_kernel_randomness_afresh(suite: Suite) -> None:
    """What comes from the kernel (os.urandom: data keys, salts, nonce prefixes, key seeds)
    differs between restores, as AWS documents for /dev/urandom; the runtime's OpenSSL (TLS
    through Python's ssl) repeats itself unless the after-restore hook reseeds it."""
    runs = _same_pid_restores(suite)
    for mode in ("plain", "hooked"):
        first, second = runs[mode]
        for name in ("data_key", "nonce_prefix", "keygen"):
            assert first[name] != second[name], (mode, name)
    plain, hooked = runs["plain"], runs["hooked"]
    assert plain[0]["runtime_openssl"] == plain[1]["runtime_openssl"]
    assert hooked[0]["runtime_openssl"] != hooked[1]["runtime_openssl"]
