"""API keys: random secrets shown once, stored as SHA-256 digests, each belonging to a tenant.

A key has 32 random bytes, so a fast hash is enough (nothing to brute-force); the digest is the
lookup index, and the short prefix helps an operator tell keys apart.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select

from synthgen.service.db import ApiKey, Database, Tenant, new_id

KEY_PREFIX = "sgk_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(db: Database, tenant_name: str) -> tuple[str, str]:
    """A new key for ``tenant_name`` (created if new). Returns (tenant id, key)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with db.write() as s:
        tenant = s.scalar(select(Tenant).where(Tenant.name == tenant_name))
        if tenant is None:
            tenant = Tenant(id=new_id("ten"), name=tenant_name)
            s.add(tenant)
            s.flush()
        s.add(ApiKey(tenant_id=tenant.id, key_hash=hash_key(key), prefix=key[:10]))
        tenant_id = tenant.id
    return tenant_id, key


def tenant_for_key(db: Database, key: str) -> str | None:
    with db.read() as s:
        return s.scalar(select(ApiKey.tenant_id).where(ApiKey.key_hash == hash_key(key),
                                                       ApiKey.revoked_at.is_(None)))
