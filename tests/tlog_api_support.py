"""Shared by tests/test_tlog_api.py and tests/test_audit_cli.py: a real SQLite transaction log,
filled directly through TransactionLog, served by a small FastAPI app mounting tlog_router under
uvicorn on 127.0.0.1 (conftest.serve_app). The tests talk to it over HTTP only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy import select, text

from beckn.store.db import create_engine, session_factory, upgrade
from beckn.tlog.api import CosignatureSource, hash_auditor_token, tlog_router
from beckn.tlog.leaf import LogRecord
from beckn.tlog.note import NoteSigner
from beckn.tlog.store import TransactionLog
from beckn.tlog.tables import TlogEntry
from conftest import serve_app

ORIGIN = "bpp.example.mq/tlog/2026h2"
SIGNER = NoteSigner.from_seed(ORIGIN, bytes(range(32)))
VKEY = SIGNER.vkey
AUDITOR_TOKEN = "auditor-token-for-tests-0123456789"
AUDITOR_CONFIG = [f"cour-des-comptes={hash_auditor_token(AUDITOR_TOKEN)}"]
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
# What an order carries and no public answer, nor any log line, may show.
NAME, PHONE = "Marie-Josée Louis-Joseph", "+596696123456"


def record(n: int, txn: str = "txn-a", *, direction: str = "in", action: str = "confirm") -> LogRecord:
    body = json.dumps({
        "context": {"action": action, "transaction_id": txn, "message_id": f"m-{n}"},
        "message": {"order": {"billing": {"name": NAME, "phone": PHONE}, "n": n}},
    }, ensure_ascii=False).encode()
    return LogRecord(
        direction=direction,  # type: ignore[arg-type]
        action=action,
        node="bpp.example.mq",
        peer="bap.example.mq",
        transaction_id=txn,
        message_id=f"00000000-0000-4000-8000-{n:012d}",
        body=body,
        seen_at=T0 + timedelta(milliseconds=n),
        headers={"Authorization": f'Signature keyId="bap.example.mq|k1|ed25519",signature="sig{n}"'},
        context_timestamp="2026-11-23T14:00:00.250+04:00",
        ack="ACK",
        response=b'{"message":{"ack":{"status":"ACK"}}}',
    )


def migrated_template(directory: Path) -> Path:
    template = directory / "template.db"
    asyncio.run(upgrade(f"sqlite+aiosqlite:///{template}"))
    return template


def new_db(template: Path, tmp_path: Path) -> str:
    target = tmp_path / "lakou.db"
    shutil.copyfile(template, target)
    return f"sqlite+aiosqlite:///{target}"


def run_with_log(url: str, work):  # noqa: ANN001, ANN201 - work: async (TransactionLog) -> T
    """Run `work(log)` on a fresh engine in a fresh event loop (the server has its own)."""

    async def main() -> Any:
        engine = create_engine(url)
        try:
            return await work(TransactionLog(session_factory(engine), SIGNER, ORIGIN))
        finally:
            await engine.dispose()

    return asyncio.run(main())


def append(url: str, records: Sequence[LogRecord], *, checkpoint: bool = True) -> str | None:
    """Append `records` (one batch) and, unless told not to, sign a checkpoint; return its note."""

    async def work(log: TransactionLog) -> str | None:
        await log.append_batch(records)
        return await log.checkpoint() if checkpoint else None

    return run_with_log(url, work)


def stored_leaves(url: str) -> list[bytes]:
    async def work(log: TransactionLog) -> list[bytes]:
        async with log._sessions() as session:  # noqa: SLF001 - the test reads the table itself
            rows = await session.execute(select(TlogEntry.leaf).order_by(TlogEntry.idx))
            return [bytes(leaf) for leaf in rows.scalars()]

    return run_with_log(url, work)


def tamper(url: str, sql: str, **params: object) -> None:
    """Change the log's tables behind its back, past the append-only triggers, as the database's
    owner could."""

    async def main() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                for table in ("tlog_entry", "tlog_node", "tlog_checkpoint"):
                    for verb in ("update", "delete"):
                        await conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")
                await conn.execute(text(sql), params)
        finally:
            await engine.dispose()

    asyncio.run(main())


@contextlib.contextmanager
def log_server(
    url: str, *, auditor_tokens: Sequence[str] | None = None, cosignatures: CosignatureSource | None = None
) -> Iterator[str]:
    """Serve the log at `url` through tlog_router; yield the base URL."""
    engine = create_engine(url)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    log = TransactionLog(session_factory(engine), SIGNER, ORIGIN)
    tokens = AUDITOR_CONFIG if auditor_tokens is None else auditor_tokens
    app.include_router(tlog_router(log, auditor_tokens=tokens, cosignatures=cosignatures))
    with serve_app(app) as base:
        yield base
