"""Transaction log costs: appends per second, proofs at a million leaves, the inbound pipeline with
the log on and off (issue 8), one request at a time and with many in flight (group commit).

Figures only, and ratios against a baseline measured in the same run (batch-of-1 appends; the
pipeline without the log), so they compare across machines where absolute timings do not.

The million-leaf tree is not built through `append_batch` (that would take as long as the append
benchmark times a million): synthetic leaf hashes go through merkle.CompactRange, the nodes it
completes are bulk-inserted into `tlog_node` and the head row gets the size and frontier. Proofs
only read nodes and the head (TransactionLog.inclusion_proof / consistency_proof), so they run
exactly as on a log that grew one append at a time. Roots for verification come from the
CompactRange while building, not from the store under test.

PostgreSQL runs when `postgres` is a URL, or when it is None and LAKOU_TEST_POSTGRES_URL is set;
each measurement gets a throwaway database, created and dropped here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.signing import SigningKey
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.pipeline import BAP_ID, _body, _registry_transport
from beckn.inbound import InboundPipeline, Role
from beckn.registry_client import KeyResolver, RegistryClient
from beckn.signing import Signer
from beckn.store.db import create_engine, session_factory, upgrade
from beckn.tlog import merkle
from beckn.tlog.leaf import LogRecord
from beckn.tlog.note import NoteSigner
from beckn.tlog.recorder import LogRecorder
from beckn.tlog.store import TransactionLog

ORIGIN = "bpp.bench.lakou/tlog"
NODE_ID = "bpp.bench.lakou"
BATCH_SIZES = (1, 64, 256)
_CHUNK = 1 << 16  # leaves per bulk insert while building the big tree


def _log(url: str) -> tuple[TransactionLog, AsyncEngine]:
    engine = create_engine(url)
    signer = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
    return TransactionLog(session_factory(engine), signer, ORIGIN), engine


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --------------------------------------------------------------------------- 1. appends


def _record(i: int) -> LogRecord:
    return LogRecord(direction="in", action="search", node=NODE_ID, peer=BAP_ID,
                     transaction_id=str(uuid.uuid4()), message_id=str(uuid.uuid4()), body=_body(i),
                     seen_at=datetime.now(UTC), ack="ACK")


async def _appends(url: str, scale: float) -> dict[str, float]:
    await upgrade(url)
    log, engine = _log(url)
    # Batches per size: enough records for a stable rate at scale 1, at least two batches.
    calls = {1: max(20, round(500 * scale)), 64: max(2, round(40 * scale)), 256: max(2, round(20 * scale))}
    out: dict[str, float] = {}
    try:
        await log.append_batch([_record(0)])  # warm-up: connection, statement cache
        for size in BATCH_SIZES:
            batches = [[_record(i) for i in range(size)] for _ in range(calls[size])]
            start = time.perf_counter()
            for batch in batches:
                await log.append_batch(batch)
            elapsed = time.perf_counter() - start
            out[f"append_batch{size}_per_s"] = size * calls[size] / elapsed
        for size in BATCH_SIZES[1:]:
            out[f"append_batch{size}_ratio"] = out[f"append_batch{size}_per_s"] / out["append_batch1_per_s"]
        out["append_entries"] = float(await log.size())
    finally:
        await engine.dispose()
    return out


# --------------------------------------------------------------------------- 2. proofs at n leaves


def _leaf(i: int) -> bytes:
    return merkle.leaf_hash(i.to_bytes(8, "big"))


async def _build_tree(url: str, n: int, old_sizes: set[int]) -> dict[int, bytes]:
    """Bulk-load the nodes of an n-leaf tree and the head; return the roots at `old_sizes` and n."""
    tree = merkle.CompactRange()
    roots: dict[int, bytes] = {}
    pending_old = sorted(old_sizes)

    def grow(until: int) -> list[tuple[int, int, bytes]]:
        nodes: list[tuple[int, int, bytes]] = []
        while tree.size < until:
            stop = min(until, pending_old[0] if pending_old else until)
            nodes.extend(tree.extend(_leaf(i) for i in range(tree.size, stop)))
            if pending_old and tree.size == pending_old[0]:
                roots[pending_old.pop(0)] = tree.root()
        return nodes

    if url.startswith("sqlite"):
        db = sqlite3.connect(url.split(":///", 1)[1])
        try:
            with db:
                for start in range(0, n, _CHUNK):
                    db.executemany("INSERT INTO tlog_node (level, idx, hash) VALUES (?, ?, ?)",
                                   grow(min(n, start + _CHUNK)))
                db.execute("UPDATE tlog_head SET size = ?, frontier = ? WHERE id = 1",
                           (tree.size, b"".join(tree.frontier)))
        finally:
            db.close()
    else:
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            async with conn.transaction():
                for start in range(0, n, _CHUNK):
                    await conn.copy_records_to_table("tlog_node", records=grow(min(n, start + _CHUNK)),
                                                     columns=["level", "idx", "hash"])
                await conn.execute("UPDATE tlog_head SET size = $1, frontier = $2 WHERE id = 1",
                                   tree.size, b"".join(tree.frontier))
            await conn.execute("ANALYZE tlog_node")
        finally:
            await conn.close()
    roots[n] = tree.root()
    return roots


async def _proofs(url: str, n: int, samples: int) -> dict[str, float]:
    await upgrade(url)
    rng = random.Random(8)
    olds = {rng.randrange(1, n) for _ in range(samples)}
    start = time.perf_counter()
    roots = await _build_tree(url, n, olds)
    out: dict[str, float] = {"proof_leaves": float(n), "proof_build_s": time.perf_counter() - start}
    log, engine = _log(url)
    try:
        stored_root = await log.root(n)
        out["proof_root_matches"] = float(stored_root == roots[n])
        indexes = [rng.randrange(n) for _ in range(samples)]
        await log.inclusion_proof(indexes[0], n)  # warm-up
        gen: list[float] = []
        ver: list[float] = []
        for index in indexes:
            t0 = time.perf_counter()
            proof = await log.inclusion_proof(index, n)
            t1 = time.perf_counter()
            merkle.verify_inclusion(_leaf(index), index, n, proof, roots[n])  # raises if wrong
            t2 = time.perf_counter()
            gen.append(t1 - t0)
            ver.append(t2 - t1)
        out.update(inclusion_p50_ms=_pct(gen, 0.5) * 1e3, inclusion_p95_ms=_pct(gen, 0.95) * 1e3,
                   inclusion_verify_p50_us=_pct(ver, 0.5) * 1e6, inclusion_verified=float(len(ver)))
        gen, ver = [], []
        for old in sorted(olds):
            t0 = time.perf_counter()
            proof = await log.consistency_proof(old, n)
            t1 = time.perf_counter()
            merkle.verify_consistency(old, n, roots[old], roots[n], proof)
            t2 = time.perf_counter()
            gen.append(t1 - t0)
            ver.append(t2 - t1)
        out.update(consistency_p50_ms=_pct(gen, 0.5) * 1e3, consistency_p95_ms=_pct(gen, 0.95) * 1e3,
                   consistency_verify_p50_us=_pct(ver, 0.5) * 1e6, consistency_verified=float(len(ver)))
    finally:
        await engine.dispose()
    return out


# --------------------------------------------------------------------------- 3. pipeline, log on/off


async def _pipeline_msgs_per_s(url: str, n: int, with_log: bool, concurrency: int = 1) -> float:
    """The bench.pipeline harness (in-process, real resolver with warm cache, real store), with the
    node's log passed as beckn/node.py does (a LogRecorder over a TransactionLog) or not at all.

    `concurrency` requests are in flight at once, as on a busy node: 1 measures one message's
    path alone; more lets accepted messages share a group commit (beckn/inbound_batch.py)."""
    await upgrade(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    key, ukid = SigningKey.generate(), str(uuid.uuid4())
    client = RegistryClient("http://registry.bench", http=httpx.AsyncClient(transport=_registry_transport(key, ukid)))
    recorder = None
    if with_log:
        recorder = LogRecorder(TransactionLog(sessions, NoteSigner(ORIGIN, Ed25519PrivateKey.generate()), ORIGIN),
                               NODE_ID)
    pipeline = InboundPipeline(sessions=sessions, resolver=KeyResolver(client), receiver_id=NODE_ID,
                               role=Role.BPP, tlog=recorder)
    signer = Signer(BAP_ID, ukid, key)
    requests = []
    for i in range(n + 1):
        body = _body(i)
        requests.append((body, {"Authorization": signer.sign(body), "Content-Type": "application/json"}))
    todo = iter(requests[1:])

    async def worker() -> None:
        for body, headers in todo:  # shared iterator: each request is sent once, by one worker
            result = await pipeline.handle("search", body, headers)
            assert result.response.acked, result.response.body

    try:
        assert (await pipeline.handle("search", *requests[0])).response.acked  # warm-up
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        if recorder is not None:
            # Every accepted message is in the log (same transaction as its row): n + warm-up.
            assert await recorder.log.size() == n + 1
    finally:
        await client.aclose()
        await engine.dispose()
    return n / elapsed


async def _pipeline(urls: list[str], n: int, concurrency: int) -> dict[str, float]:
    off = await _pipeline_msgs_per_s(urls[0], n, with_log=False)
    on = await _pipeline_msgs_per_s(urls[1], n, with_log=True)
    out = {"pipeline_messages": float(n), "pipeline_log_off_msgs_per_s": off,
           "pipeline_log_on_msgs_per_s": on, "pipeline_log_on_ratio": on / off}
    if concurrency > 1:
        c = concurrency
        off = await _pipeline_msgs_per_s(urls[2], n, with_log=False, concurrency=c)
        on = await _pipeline_msgs_per_s(urls[3], n, with_log=True, concurrency=c)
        out.update({"pipeline_concurrency": float(c), f"pipeline_c{c}_log_off_msgs_per_s": off,
                    f"pipeline_c{c}_log_on_msgs_per_s": on, f"pipeline_c{c}_log_on_ratio": on / off})
    return out


# --------------------------------------------------------------------------- backends


@contextlib.asynccontextmanager
async def _pg_database(base_url: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL database under `base_url`'s server, dropped afterwards (as tests/conftest.py)."""
    import asyncpg

    admin = base_url.replace("postgresql+asyncpg://", "postgresql://")
    name = f"lakou_bench_tlog_{uuid.uuid4().hex[:12]}"

    async def execute(sql: str) -> None:
        conn = await asyncpg.connect(admin, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    await execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base_url.rsplit('/', 1)[0]}/{name}"
    finally:
        await execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _measure(backend: str, scale: float, leaves: int, samples: int, messages: int,
                   pg_base: str | None, concurrency: int, only_pipeline: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    async with contextlib.AsyncExitStack() as stack:
        if backend == "sqlite":
            tmp = stack.enter_context(tempfile.TemporaryDirectory())
            urls = [f"sqlite+aiosqlite:///{tmp}/{name}.db"
                    for name in ("appends", "proofs", "off", "on", "c_off", "c_on")]
        else:
            assert pg_base is not None
            urls = [await stack.enter_async_context(_pg_database(pg_base)) for _ in range(6)]
        if not only_pipeline:
            out.update(await _appends(urls[0], scale))
            out.update(await _proofs(urls[1], leaves, samples))
        out.update(await _pipeline(urls[2:], messages, concurrency))
    return out


def run(scale: float = 1.0, postgres: str | bool | None = None, *, samples: int | None = None,
        messages: int | None = None, concurrency: int = 64, only_pipeline: bool = False) -> dict[str, float]:
    """Figures for SQLite (`sqlite_*`) and PostgreSQL (`postgres_*`, when asked for).

    `scale` 1.0: a 1,000,000-leaf tree, 500 single appends, 40 batches of 64 and 20 of 256, 2,000
    pipeline messages each way, one at a time and, if `concurrency` > 1, that many in flight.
    `postgres`: a server URL (throwaway databases are made on it), None for LAKOU_TEST_POSTGRES_URL
    if set, False for SQLite only. `only_pipeline`: skip the appends and proofs.
    """
    leaves = max(2, round(1_000_000 * scale))
    samples = samples or max(20, min(200, round(200 * scale ** 0.5)))
    messages = messages or max(50, round(2000 * scale))
    if postgres is None:
        postgres = os.environ.get("LAKOU_TEST_POSTGRES_URL") or False
    results: dict[str, float] = {}
    results.update({f"sqlite_{k}": v for k, v in
                    asyncio.run(_measure("sqlite", scale, leaves, samples, messages, None, concurrency,
                                         only_pipeline)).items()})
    if postgres:
        assert isinstance(postgres, str)
        try:
            pg = asyncio.run(_measure("postgres", scale, leaves, samples, messages, postgres, concurrency,
                                      only_pipeline))
        except OSError as exc:  # no server there: say so, keep the SQLite figures
            print(f"tlog bench: SKIPPING POSTGRESQL at {postgres}: {exc!r}", file=sys.stderr)
        else:
            results.update({f"postgres_{k}": v for k, v in pg.items()})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = a 1,000,000-leaf tree (default)")
    parser.add_argument("--postgres-url", default=None,
                        help="PostgreSQL server to make throwaway databases on (default: LAKOU_TEST_POSTGRES_URL)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--messages", type=int, default=None, help="pipeline messages each way")
    parser.add_argument("--concurrency", type=int, default=64,
                        help="pipeline requests in flight at once, besides one at a time (default 64; 1: only that)")
    parser.add_argument("--pipeline-only", action="store_true", help="skip the append and proof figures")
    args = parser.parse_args()
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    figures = run(args.scale, False if args.no_postgres else args.postgres_url, messages=args.messages,
                  concurrency=args.concurrency, only_pipeline=args.pipeline_only)
    for backend in ("sqlite", "postgres"):
        mine = {k.removeprefix(f"{backend}_"): v for k, v in figures.items() if k.startswith(f"{backend}_")}
        if not mine:
            continue
        if "proof_leaves" in mine:
            print(f"\n{backend}: transaction log, {int(mine['proof_leaves']):,}-leaf tree "
                  f"(built in {mine['proof_build_s']:.1f} s)")
        else:
            print(f"\n{backend}: transaction log, inbound pipeline only")
        print(f"{'figure':<32}{'value':>14}")
        for name, value in mine.items():
            print(f"{name:<32}{value:>14,.2f}")


if __name__ == "__main__":
    main()
