"""S3: serve a ranged GetObject from the requested bytes only.

moto 5.2.5's GetObject reads the whole object (`FakeKey.value` reads and copies the whole
buffer) and only then slices the range (`S3Response._handle_range_header`). One ranged GET
of an 8 MiB part of a 1 GiB object therefore copies 2 GiB inside the emulator, so the
parallel ingest (one ranged GET per part) and ranged retrieval cost O(object) per request
here, unlike S3. With this patch one `bytes=A-B`, `bytes=A-` or `bytes=-N` range (no
`partNumber`) reads only those bytes from the key's buffer and answers 206 with the same
headers moto's own path sets; anything else (several ranges, unsatisfiable ones) takes
moto's path unchanged.

Upstream-worthy: yes. A performance gap only; the answers are the same.
"""

from __future__ import annotations

import inspect
import re
import threading
from typing import Any

from devstack.moto_patches._internals import Runtime, checking, parameters

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_local = threading.local()


def check() -> None:
    with checking(__name__) as expect:
        from moto.s3.models import FakeKey
        from moto.s3.responses import S3Response

        value = FakeKey.__dict__.get("value")
        expect(
            isinstance(value, property)
            and value.fget is not None
            and "_value_buffer" in inspect.getsource(value.fget),
            "moto.s3 FakeKey.value is no longer a property reading self._value_buffer",
        )
        expect(
            parameters(S3Response.get_object) == ["self"]
            and "return 200, response_headers, key.value"
            in inspect.getsource(S3Response.get_object),
            "moto.s3 S3Response.get_object(self) no longer ends with "
            "`return 200, response_headers, key.value`",
        )
        source = inspect.getsource(S3Response.key_response)
        expect(
            "_handle_range_header" in source and "status_code == 200" in source,
            "moto.s3 S3Response.key_response no longer slices ranges of 200 answers only",
        )


def _wanted(spec: str, size: int) -> tuple[int, int] | None:
    """(first, last) of one satisfiable range, else None (moto's own path decides)."""
    match = _RANGE.fullmatch(spec.strip())
    if match is None or size == 0:
        return None
    first, last = match.groups()
    if first:
        begin = int(first)
        end = min(int(last), size - 1) if last else size - 1
    elif last:
        begin, end = max(0, size - int(last)), size - 1
        if int(last) == 0:
            return None
    else:
        return None
    if begin > end or begin >= size:
        return None
    return begin, end


def apply(runtime: Runtime) -> None:
    from moto.s3.models import FakeKey
    from moto.s3.responses import S3Response

    value = FakeKey.__dict__["value"]
    original_get = S3Response.get_object

    def ranged_value(self: Any) -> bytes:
        spec = getattr(_local, "spec", None)
        wanted = _wanted(spec, int(self.size)) if spec else None
        if wanted is None:
            return value.fget(self)  # type: ignore[no-any-return]
        _local.spec = None
        _local.served = (wanted, int(self.size))
        begin, end = wanted
        with self.lock:
            self._value_buffer.seek(begin)
            return bytes(self._value_buffer.read(end - begin + 1))

    def get_object(self: Any) -> Any:
        spec = self.headers.get("range") or ""
        if not spec or "," in spec or "partNumber" in self.querystring:
            return original_get(self)
        _local.spec, _local.served = spec, None
        try:
            status, headers, body = original_get(self)
        finally:
            served, _local.spec, _local.served = _local.served, None, None
        if status != 200 or served is None:
            return status, headers, body
        (begin, end), size = served
        for name in [h for h in headers if h.lower().startswith("x-amz-checksum-")]:
            del headers[name]
        headers["content-range"] = f"bytes {begin}-{end}/{size}"
        headers["content-length"] = str(len(body))
        return 206, headers, body

    FakeKey.value = property(ranged_value, value.fset)  # type: ignore[assignment,method-assign]
    S3Response.get_object = get_object  # type: ignore[method-assign]
