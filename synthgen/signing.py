"""Standard Webhooks signatures (https://www.standardwebhooks.com): the service signs each
delivery, a receiver verifies it with :func:`verify`.

A secret is ``whsec_`` + base64 of 32 random bytes; the HMAC key is those bytes. A delivery
carries ``webhook-id``, ``webhook-timestamp`` (UNIX seconds) and
``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"
TOLERANCE_S = 300  # receivers refuse a timestamp further than this from their clock


class InvalidSignature(Exception):
    """The delivery is not signed with this secret, or is too old (a replay)."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value of a delivery."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: Mapping[str, str], body: bytes, *,
           tolerance_s: float = TOLERANCE_S, now: float | None = None) -> str:
    """Check a delivery; return its ``webhook-id`` (dedupe on it: a retry repeats it).

    ``headers`` must look names up case-insensitively or hold them in lower case.
    """
    try:
        msg_id = headers["webhook-id"]
        timestamp = int(headers["webhook-timestamp"])
        signatures = headers["webhook-signature"].split()
    except (KeyError, ValueError) as exc:
        raise InvalidSignature("missing or malformed webhook headers") from exc
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        raise InvalidSignature("the webhook-timestamp is too far from now")
    expected = sign(secret, msg_id, timestamp, body)
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise InvalidSignature("no signature matches this secret")
    return msg_id
