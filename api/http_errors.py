"""Requests uvicorn cannot parse get problem details too, not its plain-text 400.

uvicorn answers a request it cannot parse (an oversized request line, a malformed header, a NUL
in the method) itself, before the application sees anything, with ``text/plain`` "Invalid HTTP
request received.". Its protocol classes route that answer through ``send_400_response``; these
subclasses write the problem+json body the API promises everywhere instead. ``synthgen serve``
passes :func:`protocol_class` to uvicorn (``uvicorn --factory api.main:create_app --http
api.http_errors:ProblemHttpToolsProtocol`` does the same by hand).

The limit itself stays uvicorn's: with httptools (the default when installed) a request line
of up to about 64 KiB is parsed and a longer one is a parse error (measured: 65,500 bytes
pass, 65,560 do not); h11 caps the request line and headers together at 16 KiB
(``--h11-max-incomplete-event-size``). Only the answer changes.
"""

from __future__ import annotations

import json
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from api.problems import MEDIA_TYPE, problem_body

DETAIL = ("the request could not be parsed: a malformed or oversized request line or header "
          "(a request line is limited to 64 KiB; see docs/service.md)")


def _problem() -> bytes:
    return json.dumps(problem_body(None, 400, "bad-request", DETAIL)).encode()


def _head(default_headers: list[tuple[bytes, bytes]], length: int) -> bytes:
    lines = [b"HTTP/1.1 400 Bad Request\r\n"]
    lines += [name + b": " + value + b"\r\n" for name, value in default_headers]
    lines += [b"content-type: " + MEDIA_TYPE.encode() + b"\r\n",
              b"content-length: " + str(length).encode() + b"\r\n",
              b"connection: close\r\n\r\n"]
    return b"".join(lines)


class ProblemH11Protocol(H11Protocol):
    def send_400_response(self, msg: str) -> None:
        body = _problem()
        self.transport.write(_head(self.server_state.default_headers, len(body)) + body)
        self.transport.close()


def _httptools_protocol() -> Any:
    try:  # httptools is optional; uvicorn's "auto" uses it when installed, else h11
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover
        return None

    class ProblemHttpToolsProtocol(HttpToolsProtocol):
        def send_400_response(self, msg: str) -> None:
            body = _problem()
            self.transport.write(_head(self.server_state.default_headers, len(body)) + body)
            self.transport.close()

    return ProblemHttpToolsProtocol


ProblemHttpToolsProtocol = _httptools_protocol()


def protocol_class() -> Any:
    """The protocol uvicorn's ``auto`` would pick (httptools when installed, else h11), with
    problem details for unparsable requests."""
    return ProblemHttpToolsProtocol or ProblemH11Protocol
