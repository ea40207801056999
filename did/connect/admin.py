"""Operator actions behind `lakou connect ...`: register clients, add local accounts, rotate keys."""

from __future__ import annotations

import re
import secrets
import uuid
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from beckn.store.db import create_engine, session_factory, upgrade
from did.connect.keys import KeyStore, load_server_secret
from did.connect.oauth import SCOPES, password_hasher
from did.connect.settings import ConnectSettings
from did.connect.tables import ConnectAccount, ConnectClient

COMMUNE = re.compile(r"^insee:972\d\d$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class AdminError(ValueError):
    pass


def _check_uri(uri: str, what: str) -> str:
    parts = urlsplit(uri)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.fragment:
        raise AdminError(f"{what} {uri!r}: an absolute http(s) URL without a fragment is required")
    if parts.scheme == "http" and parts.hostname not in ("localhost", "127.0.0.1", "::1"):
        raise AdminError(f"{what} {uri!r}: https is required (plain http only on loopback)")
    return uri


async def _sessions(settings: ConnectSettings):  # noqa: ANN202
    url = settings.resolved_database_url()
    await upgrade(url)
    engine = create_engine(url)
    return engine, session_factory(engine)


async def add_client(settings: ConnectSettings, *, client_id: str, redirect_uris: list[str], name: str | None = None,
                     post_logout_redirect_uris: list[str] | None = None, sector: str | None = None,
                     backchannel_logout_uri: str | None = None, userinfo_signed: bool = False,
                     scopes: list[str] | None = None) -> str:
    """Register a client; returns its secret (shown once, stored as an Argon2id hash)."""
    if not re.fullmatch(r"[A-Za-z0-9._:-]{3,128}", client_id):
        raise AdminError("client_id: 3 to 128 characters among letters, digits and . _ : -")
    if not redirect_uris:
        raise AdminError("at least one --redirect-uri is required")
    for uri in redirect_uris:
        _check_uri(uri, "redirect URI")
    for uri in post_logout_redirect_uris or []:
        _check_uri(uri, "post-logout redirect URI")
    if backchannel_logout_uri:
        _check_uri(backchannel_logout_uri, "back-channel logout URI")
    hosts = {urlsplit(u).hostname for u in redirect_uris}
    if sector is None:
        if len(hosts) > 1:
            raise AdminError("redirect URIs on several hosts share one pairwise sector: give --sector")
        sector = hosts.pop()
    unknown = set(scopes or []) - set(SCOPES)
    if unknown:
        raise AdminError(f"unknown scopes: {', '.join(sorted(unknown))}")
    secret = secrets.token_urlsafe(32)
    engine, sessions = await _sessions(settings)
    try:
        async with sessions() as s:
            if await s.get(ConnectClient, client_id):
                raise AdminError(f"client {client_id!r} already exists")
            s.add(ConnectClient(client_id=client_id, secret_hash=password_hasher(settings).hash(secret),
                                name=name or client_id,
                                redirect_uris=redirect_uris, post_logout_redirect_uris=post_logout_redirect_uris or [],
                                sector_identifier=sector, backchannel_logout_uri=backchannel_logout_uri,
                                userinfo_signed_response_alg="ES256" if userinfo_signed else None,
                                scopes=scopes or list(SCOPES)))
            await s.commit()
    finally:
        await engine.dispose()
    return secret


async def list_clients(settings: ConnectSettings) -> list[dict[str, Any]]:
    engine, sessions = await _sessions(settings)
    try:
        async with sessions() as s:
            rows = (await s.execute(select(ConnectClient).order_by(ConnectClient.client_id))).scalars()
            return [r.model_dump(exclude={"secret_hash", "created_at"}) for r in rows]
    finally:
        await engine.dispose()


async def add_user(settings: ConnectSettings, *, username: str, password: str, email: str | None = None,
                   given_name: str | None = None, family_name: str | None = None, birthdate: str | None = None,
                   commune: str | None = None) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._@+-]{2,100}", username):
        raise AdminError("username: 2 to 100 characters among letters, digits and . _ @ + -")
    if len(password) < 10:
        raise AdminError("password: at least 10 characters")
    if commune and not COMMUNE.match(commune):
        raise AdminError("commune: insee:972xx (a Martinique INSEE commune code)")
    if birthdate and not DATE.match(birthdate):
        raise AdminError("birthdate: YYYY-MM-DD")
    engine, sessions = await _sessions(settings)
    try:
        async with sessions() as s:
            taken = (await s.execute(select(ConnectAccount).where(
                (ConnectAccount.username == username) | ((ConnectAccount.email == email) if email else False)
            ))).scalars().first()
            if taken:
                raise AdminError("username or email already in use")
            account_id = str(uuid.uuid4())
            s.add(ConnectAccount(id=account_id, username=username, email=email,
                                 password_hash=password_hasher(settings).hash(password),
                                 given_name=given_name, family_name=family_name, birthdate=birthdate,
                                 commune=commune))
            await s.commit()
    finally:
        await engine.dispose()
    return account_id


async def rotate_keys(settings: ConnectSettings) -> dict[str, str | None]:
    engine, sessions = await _sessions(settings)
    try:
        return await KeyStore(sessions, load_server_secret(settings.connect_secret, settings.data_dir)).rotate()
    finally:
        await engine.dispose()
