"""Server secret, signing keys (ES256, next → current → retired) and the JWKS.

Private JWKs are encrypted at rest: XSalsa20-Poly1305 (`nacl.secret.SecretBox`) under a key
derived from the server secret with BLAKE2b (keyed, personalised); they never appear in logs
or in `repr`. `kid` is the RFC 7638 thumbprint (jwcrypto's `thumbprint()`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

import nacl.secret
from jwcrypto import jwk
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from did.connect.tables import ConnectSigningKey

ALG = "ES256"


def load_server_secret(secret: str | None, data_dir: Path) -> bytes:
    if secret:
        return secret.encode()
    path = data_dir / "connect-secret"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    return path.read_text().strip().encode()


def derive(secret: bytes, purpose: str, size: int = 32) -> bytes:
    return hashlib.blake2b(secret, digest_size=size, person=purpose.encode()[:16].ljust(16, b"\0")).digest()


def pairwise_sub(secret: bytes, sector: str, account_id: str) -> str:
    """OIDC Core §8.1: HMAC-SHA256(server secret, sector_identifier ‖ local account id), hex."""
    key = derive(secret, "mq-pairwise")
    return hmac.new(key, sector.encode() + b"\x00" + account_id.encode(), hashlib.sha256).hexdigest()


class KeyStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], secret: bytes) -> None:
        self._sessions = sessions
        self._box = nacl.secret.SecretBox(derive(secret, "mq-keys-at-rest"))

    def __repr__(self) -> str:
        return "KeyStore(<sealed>)"

    def _new(self, state: str) -> ConnectSigningKey:
        key = jwk.JWK.generate(kty="EC", crv="P-256")
        kid = key.thumbprint()
        public = key.export_public(as_dict=True) | {"kid": kid, "use": "sig", "alg": ALG}
        private = key.export_private(as_dict=False).encode()
        now = datetime.now(UTC)
        return ConnectSigningKey(kid=kid, alg=ALG, state=state, public_jwk=public,
                                 private_jwk_sealed=bytes(self._box.encrypt(private)),
                                 activated_at=now if state == "current" else None)

    async def ensure(self) -> None:
        """A current and a next key exist (first start)."""
        async with self._sessions() as session:
            states = {k.state for k in (await session.execute(select(ConnectSigningKey))).scalars()}
            if "current" not in states:
                session.add(self._new("current"))
            if "next" not in states:
                session.add(self._new("next"))
            await session.commit()

    async def rotate(self) -> dict[str, str | None]:
        """next → current, current → retired, and a new next. Returns the kids."""
        await self.ensure()
        now = datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            keys = {k.state: k for k in (await session.execute(
                select(ConnectSigningKey).where(ConnectSigningKey.state != "retired").with_for_update()
            )).scalars()}
            old, nxt = keys["current"], keys["next"]
            await session.execute(update(ConnectSigningKey).where(ConnectSigningKey.kid == old.kid)
                                  .values(state="retired", retired_at=now))
            await session.execute(update(ConnectSigningKey).where(ConnectSigningKey.kid == nxt.kid)
                                  .values(state="current", activated_at=now))
            new = self._new("next")
            session.add(new)
        return {"retired": old.kid, "current": nxt.kid, "next": new.kid}

    async def signing_key(self) -> jwk.JWK:
        async with self._sessions() as session:
            row = (await session.execute(
                select(ConnectSigningKey).where(ConnectSigningKey.state == "current")
            )).scalar_one()
        import json

        private = json.loads(self._box.decrypt(row.private_jwk_sealed))
        return jwk.JWK(**(private | {"kid": row.kid, "alg": ALG, "use": "sig"}))

    async def jwks(self) -> dict:
        """Public keys: current first, then next, then retired (retired ones still verify old tokens)."""
        order = {"current": 0, "next": 1, "retired": 2}
        async with self._sessions() as session:
            rows = list((await session.execute(select(ConnectSigningKey))).scalars())
        rows.sort(key=lambda r: (order[r.state], r.created_at))
        return {"keys": [r.public_jwk for r in rows]}
