"""Request bodies over a route's cap get a problem+json 413, whoever notices it first.

Starlette's body limit answers ``text/plain`` when the announced Content-Length is over the cap
(or FastAPI's own JSON when the body runs past it while streaming). This outermost ASGI
middleware refuses an announced length at once, before any body byte is read, and rewrites any
other 413 into the problem details the API promises everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import MEDIA_TYPE, problem_body


class ProblemBodyLimit:
    def __init__(self, app: ASGIApp, limit_for: Callable[[str, str], int]) -> None:
        self.app = app
        self.limit_for = limit_for  # (method, path) -> the route's cap in bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        limit = self.limit_for(scope["method"], path)
        announced = Headers(scope=scope).get("content-length", "")
        if announced.isdigit() and int(announced) > limit:
            await _send_413(send, path, limit)
            return
        rewritten = False

        async def send_problem(message: Message) -> None:
            nonlocal rewritten
            if message["type"] == "http.response.start" and message["status"] == 413:
                content_type = Headers(raw=message.get("headers", [])).get("content-type", "")
                if content_type != MEDIA_TYPE:
                    rewritten = True
                    await _send_413(send, path, limit)
                    return
            if rewritten:  # the body of the response that was replaced
                return
            await send(message)

        await self.app(scope, receive, send_problem)


async def _send_413(send: Send, path: str, limit: int) -> None:
    body = json.dumps(problem_body(
        path, 413, "too-large", f"the request body is over this route's limit of {limit:,} "
        "bytes")).encode()
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
