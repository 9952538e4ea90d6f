"""Reading request bodies with a hard cap, whatever Content-Length claims (or chunked bodies omit).

A body the server cannot decode (a chunked body with a bad chunk size, chunk data without its CRLF, a
forbidden trailer such as Content-Length) is the client's fault: a 400, logged at INFO, never a 500
with a traceback. The WSGI server raises its own exception types for these (gunicorn's
`ParseException`s, an `OSError` on a cut connection), so every failure of the read itself is caught.
"""

from __future__ import annotations

import logging
from io import BytesIO
from typing import IO

from flask import request
from werkzeug.exceptions import HTTPException
from werkzeug.formparser import parse_form_data

from webhook.validation import InvalidInput

log = logging.getLogger(__name__)

READ_CHUNK = 1024
UNREADABLE_BODY = "body could not be read (malformed chunked encoding or trailer)"


def read_capped(limit: int) -> bytes:
    """At most limit + 1 bytes of the body, so an oversize one is detected without reading it all.

    With a Content-Length (within the limit) the stream ends there, so reading stops once that many
    bytes came: a callback's ~100 bytes take one read, not a second one that finds the end."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise InvalidInput(f"body larger than {limit} bytes", status=413)
    wanted = declared if declared is not None else limit + 1
    return read_stream(request.stream, wanted)


def read_stream(stream: IO[bytes], wanted: int) -> bytes:
    """Up to `wanted` bytes (fewer if the stream ends first); a read the server cannot complete is a
    400 (InvalidInput), werkzeug's own answers (client disconnected, too large) stand as they are."""
    chunks: list[bytes] = []
    total = 0
    while total < wanted:
        try:
            chunk = stream.read(min(READ_CHUNK, wanted - total))
        except HTTPException:
            raise
        except Exception as exc:  # the server's framing error, whatever its type
            log.info("unreadable request body", extra={"error": type(exc).__name__})
            raise InvalidInput(UNREADABLE_BODY) from None
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


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
