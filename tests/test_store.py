"""Storage: engines, migrations and the core tables, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic import command
from sqlalchemy import JSON, Column, Integer, MetaData, Numeric, String, column, delete, func, insert, select, table
from sqlalchemy.exc import IntegrityError, StatementError
from typer.testing import CliRunner

from beckn.cli import app as cli_app
from beckn.store.db import (
    alembic_config,
    create_engine,
    current_revision,
    database_url,
    head_revision,
    is_sqlite,
    session_factory,
    upgrade,
)
from beckn.store.tables import DeliveryAttempt, InboundMessage, OutboxMessage, UTCDateTime, metadata
import bap.tables  # noqa: F401  (each service registers its tables in `metadata`)
import bpp.tables  # noqa: F401
import beckn.tlog.tables  # noqa: F401
import beckn.tlog.witness  # noqa: F401  (tlog_witnessed, tlog_cosignature: migration 0019)
import did.connect.tables  # noqa: F401
import registry.tables  # noqa: F401


def _diff(connection, target: MetaData) -> list:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return compare_metadata(context, target)


def _inbound(**overrides) -> InboundMessage:
    values = dict(
        sender_id="bap.example.mq",
        message_id="m-1",
        action="search",
        transaction_id="t-1",
        body=b'{"context":{},"message":{}}\xff\x00',
        body_digest="ZGlnZXN0",
        headers={"authorization": 'Signature keyId="a|b|ed25519"', "content-type": "application/json"},
        received_at=datetime.now(UTC),
        response_status=200,
        response_body=b'{"message":{"ack":{"status":"ACK"}}}',
    )
    values.update(overrides)
    return InboundMessage(**values)


async def test_migrated_schema_matches_models(db_url: str) -> None:
    await upgrade(db_url)
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff, metadata) == []

            # The comparison must be able to fail: a column the migration lacks is reported.
            changed = MetaData(naming_convention=metadata.naming_convention)
            for table in metadata.tables.values():
                table.to_metadata(changed)
            changed.tables["outbox_message"].append_column(Column("priority", Integer, nullable=True))
            diff = await conn.run_sync(_diff, changed)
            assert [(d[0], d[3].name) for d in diff] == [("add_column", "priority")]
    finally:
        await engine.dispose()


async def test_upgrade_is_idempotent_and_safe_when_processes_start_together(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Migrations are found next to the package, not relative to the working directory.
    monkeypatch.chdir(tmp_path)
    assert await current_revision(db_url) is None
    await asyncio.gather(*(upgrade(db_url) for _ in range(3)))
    assert await current_revision(db_url) == head_revision()
    head = head_revision()
    assert head is not None
    await upgrade(db_url)  # at every start: a no-op at head
    assert await current_revision(db_url) == head


async def test_rows_round_trip_exact_bytes_json_and_aware_utc(db_url: str) -> None:
    await upgrade(db_url)
    engine = create_engine(db_url)
    sessions = session_factory(engine)
    martinique = timezone(timedelta(hours=-4))
    received = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=martinique)
    try:
        async with sessions() as session:
            row = _inbound(received_at=received, expires_at=received + timedelta(seconds=30))
            session.add(row)
            await session.commit()
            assert row.id is not None
            assert row.received_at == received  # still readable after commit

        async with sessions() as session:
            stored = (await session.execute(select(InboundMessage))).scalar_one()
        assert stored.body == b'{"context":{},"message":{}}\xff\x00'
        assert stored.headers["authorization"] == 'Signature keyId="a|b|ed25519"'
        assert stored.received_at == received
        assert stored.received_at.tzinfo is not None and stored.received_at.utcoffset() == timedelta(0)
        assert stored.expires_at == received + timedelta(seconds=30)
        assert stored.processed_at is None and stored.attempts == 0

        # Datetimes compare as instants in SQL too, whatever offset they were written with.
        async with sessions() as session:
            later = (await session.execute(
                select(func.count()).select_from(InboundMessage)
                .where(InboundMessage.received_at > datetime(2026, 3, 1, 12, 30, 15, tzinfo=UTC))
            )).scalar_one()
            earlier = (await session.execute(
                select(func.count()).select_from(InboundMessage)
                .where(InboundMessage.received_at > datetime(2026, 3, 1, 12, 30, 16, tzinfo=UTC))
            )).scalar_one()
        assert (later, earlier) == (1, 0)
    finally:
        await engine.dispose()


async def test_one_message_per_sender_message_id_and_action(db_url: str) -> None:
    await upgrade(db_url)
    engine = create_engine(db_url)
    sessions = session_factory(engine)
    try:
        async with sessions() as session:
            session.add(_inbound())
            session.add(_inbound(action="on_search"))  # same message_id, other action: allowed
            session.add(_inbound(sender_id="other.example.mq"))  # other sender: allowed
            await session.commit()
        async with sessions() as session:
            session.add(_inbound(body=b"{}"))
            with pytest.raises(IntegrityError):
                await session.commit()
    finally:
        await engine.dispose()


async def test_naive_datetimes_are_refused(db_url: str) -> None:
    await upgrade(db_url)
    engine = create_engine(db_url)
    try:
        async with session_factory(engine)() as session:
            session.add(_inbound(received_at=datetime(2026, 3, 1, 8, 0)))
            with pytest.raises(StatementError, match="naive datetime"):
                await session.commit()
    finally:
        await engine.dispose()


async def test_delivery_attempts_need_their_outbox_row_and_go_with_it(db_url: str) -> None:
    await upgrade(db_url)
    engine = create_engine(db_url)
    sessions = session_factory(engine)
    now = datetime.now(UTC)
    try:
        async with sessions() as session:
            session.add(DeliveryAttempt(outbox_id=999, attempt_no=1, started_at=now, duration_ms=1.0,
                                        outcome="retry"))
            with pytest.raises(IntegrityError):
                await session.commit()
        async with sessions() as session:
            message = OutboxMessage(destination_url="http://bap.example.mq/on_search",
                                    destination_key="http://bap.example.mq:80", action="on_search",
                                    transaction_id="t", message_id="m", body=b"{}",
                                    expires_at=now + timedelta(seconds=30))
            session.add(message)
            await session.flush()
            session.add(DeliveryAttempt(outbox_id=message.id, attempt_no=1, started_at=now, duration_ms=1.0,
                                        outcome="retry"))
            await session.commit()
            await session.execute(delete(OutboxMessage).where(OutboxMessage.id == message.id))
            await session.commit()
            remaining = (await session.execute(select(func.count()).select_from(DeliveryAttempt))).scalar_one()
        assert remaining == 0
    finally:
        await engine.dispose()


async def test_sqlite_is_durable_at_commit(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        async with engine.connect() as conn:
            pragmas = {name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                       for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")}
    finally:
        await engine.dispose()
    # synchronous 2 = FULL: the WAL is synced at each commit, so an ACK survives a power cut.
    assert pragmas == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "busy_timeout": 5000}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql+aiomysql://u@h/db", "unsupported database 'mysql'"),
        ("sqlite+aiosqlite://", "in-memory SQLite is not supported"),
        ("sqlite+aiosqlite:///:memory:", "in-memory SQLite is not supported"),
        ("sqlite+pysqlite:///x.db", "unsupported SQLite driver 'pysqlite'"),
        ("postgresql+psycopg2://u@h/db", "uses asyncpg"),
        ("not a url", "invalid database URL"),
    ],
)
def test_unusable_database_urls_are_explained(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_engine(url)


def test_plain_urls_get_the_async_drivers() -> None:
    assert database_url("postgres://u:secret@h:5432/db").drivername == "postgresql+asyncpg"
    assert database_url("postgresql://u@h/db").drivername == "postgresql+asyncpg"
    assert database_url("sqlite:///data/lakou.db").drivername == "sqlite+aiosqlite"
    assert is_sqlite("sqlite:///data/lakou.db") and not is_sqlite("postgresql://u@h/db")


def test_cli_upgrade_and_current(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    before = runner.invoke(cli_app, ["db", "current", "--db", db_url])
    assert before.exit_code == 1
    done = runner.invoke(cli_app, ["db", "upgrade", "--db", db_url])
    assert done.exit_code == 0, done.output
    head = head_revision()
    assert f"{head} (head)" in done.output
    now = runner.invoke(cli_app, ["db", "current", "--db", db_url])
    assert now.exit_code == 0 and f"at revision {head} (head)" in now.output

    # Default URL: SQLite under the data directory, created on demand.
    monkeypatch.setenv("LAKOU_DATA_DIR", str(tmp_path / "fresh" / "data"))
    monkeypatch.delenv("LAKOU_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    default = runner.invoke(cli_app, ["db", "upgrade"])
    assert default.exit_code == 0, default.output
    assert (tmp_path / "fresh" / "data" / "lakou.db").exists()

    bad = runner.invoke(cli_app, ["db", "upgrade", "--db", "mysql://u@h/db"])
    assert bad.exit_code == 2 and "unsupported database 'mysql'" in bad.output


async def _migrate_to(url: str, revision: str) -> None:
    """Bring the schema at `url` to `revision` (not head), as `upgrade` does for head."""
    engine = create_engine(url)
    config = alembic_config(url)
    try:
        async with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")  # batch migrations rebuild tables

            def run(connection: Any) -> None:
                config.attributes["connection"] = connection
                command.upgrade(config, revision)

            await conn.run_sync(run)
            await conn.commit()
    finally:
        await engine.dispose()


async def test_0010_moves_cancellations_and_ratings_out_of_the_fulfillment_json(db_url: str) -> None:
    from bpp.tables import BppOrder

    await _migrate_to(db_url, "0009")
    now = datetime.now(UTC)
    # The tables as revision 0009 has them (the models already have 0010's columns).
    provider = table("bpp_provider", *(column(name, JSON) for name in ("descriptor", "location", "categories",
                                                                       "fulfillment_types")),
                     column("id", String), column("city_code", String), column("search_text", String),
                     column("created_at", UTCDateTime), column("updated_at", UTCDateTime))
    order = table("bpp_order", *(column(name, String) for name in (
        "id", "transaction_id", "confirm_message_id", "bap_id", "bap_uri", "provider_id", "status", "lang",
        "currency")), *(column(name, JSON) for name in ("billing", "fulfillment", "payment", "quote")),
        column("total", Numeric(12, 2)), column("created_at", UTCDateTime), column("updated_at", UTCDateTime))
    cancellation = {"time": "2026-11-20T10:00:00.000Z", "cancelled_by": "CONSUMER",
                    "reason": {"id": "002", "descriptor": {"code": "002", "name": "Commande passée par erreur"}}}
    ratings = [{"rating_category": "Provider", "id": "jardin-lamentin", "value": "4", "time": "2026-11-21T09:00:00Z"}]
    state = {"descriptor": {"code": "CANCELLED"}, "updated_at": "2026-11-20T10:00:00.000Z"}
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(provider).values(
                id="jardin-lamentin", descriptor={"fr": {"name": "Jardin"}}, location={"id": "l1"}, categories=[],
                fulfillment_types=["Self-Pickup"], city_code="insee:97213", search_text="jardin",
                created_at=now, updated_at=now))
            common = dict(transaction_id="t", confirm_message_id="m", bap_id="bap", bap_uri="https://bap.mq/beckn",
                          provider_id="jardin-lamentin", lang="fr", currency="EUR", billing={"name": "Léa"},
                          payment={}, quote={}, total=Decimal("4.20"), created_at=now, updated_at=now)
            await conn.execute(insert(order).values(
                id="LKU-OLD", status="CANCELLED", **common | {"transaction_id": "t1"},
                fulfillment={"id": "f", "type": "Self-Pickup", "state": state,
                             "lakou": {"cancellation": cancellation, "ratings": ratings}}))
            await conn.execute(insert(order).values(
                id="LKU-PLAIN", status="ACTIVE", **common | {"transaction_id": "t2"},
                fulfillment={"id": "f", "type": "Self-Pickup"}))
        await upgrade(db_url)
        async with session_factory(engine)() as session:
            old = await session.get(BppOrder, "LKU-OLD")
            plain = await session.get(BppOrder, "LKU-PLAIN")
    finally:
        await engine.dispose()
    assert old is not None and plain is not None
    assert old.cancellation == cancellation and old.ratings == ratings
    assert old.fulfillment == {"id": "f", "type": "Self-Pickup", "state": state}  # the private key is gone
    assert (plain.cancellation, plain.ratings) == (None, None)
    assert plain.fulfillment == {"id": "f", "type": "Self-Pickup"}
