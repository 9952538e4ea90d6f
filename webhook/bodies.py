"""Reading request bodies with a hard cap, whatever Content-Length claims (or chunked bodies omit)."""

from __future__ import annotations

from io import BytesIO

from flask import request
from werkzeug.formparser import parse_form_data

from webhook.validation import InvalidInput

READ_CHUNK = 1024


def read_capped(limit: int) -> bytes:
    """At most limit + 1 bytes of the body, so an oversize one is detected without reading it all."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise InvalidInput(f"body larger than {limit} bytes", status=413)
    stream = request.stream
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = stream.read(min(READ_CHUNK, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def multipart_fields(raw: bytes) -> dict[str, str]:
    """Text fields of a multipart/form-data body already read (and capped) into memory."""
    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": request.headers.get("Content-Type", ""),
        "CONTENT_LENGTH": str(len(raw)),
        "wsgi.input": BytesIO(raw),
    }
    try:
        _, form, _ = parse_form_data(environ, max_form_parts=64, silent=False)
    except Exception:  # werkzeug raises several types for a broken multipart body
        raise InvalidInput("body is not a valid multipart form") from None
    out: dict[str, str] = {}
    for key in form:
        values = form.getlist(key)
        if len(values) > 1:
            raise InvalidInput(f"{key} given more than once", field=key)
        out[key] = values[0]
    return out
