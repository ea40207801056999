"""Federation with partner registries: a local miss asks the partners, whose signed answers are
verified, cached, marked with their origin and never looped; signed snapshots carry a partner's
directory offline. Real registries served on 127.0.0.1 (SQLite and PostgreSQL); the hostile or
slow partners are small stand-in servers, since they play someone else's registry."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import Response
from structlog.testing import capture_logs
from typer.testing import CliRunner

from beckn.cli import app as cli_app
from beckn.keyfile import ensure_node_keys
from beckn.keys import generate_key_pairs, load_signing_key, load_verify_key
from beckn.signing import Signer
from beckn.store.db import create_engine, session_factory, upgrade
from conftest import free_port, serve_app
from network import DelayingProxy
from registry.app import create_app
from registry.federation import HOPS_HEADER, VISITED_HEADER, Federation, Partner, parse_partners
from registry.lookup import parse_filter
from registry.settings import RegistrySettings
from registry.signed_response import RESPONSE_SIGNATURE_HEADER, signed_json, verify_lookup_response
from registry.snapshot import verify_snapshot, SnapshotError
from test_registry_service import AUTH, TOKEN, record

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store

MTQ_ID = "registry.mtq.test"
GLP_ID = "registry.glp.test"
runner = CliRunner()


@dataclass
class Reg:
    """A registry about to run: its id, data dir, keys and port are known before it starts, so
    that two registries can name each other as partners."""

    id: str
    data_dir: Path
    db_url: str
    port: int
    reached_through: DelayingProxy | None = None  # the link its partners reach it by, if any

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def public_key(self) -> str:
        return ensure_node_keys(self.data_dir)["signing_public_key"]

    def partner(self) -> dict[str, str]:
        return {"id": self.id, "url": self.url, "signing_public_key": self.public_key}

    def settings(self, partners: list[dict[str, str]], **over: Any) -> RegistrySettings:
        values: dict[str, Any] = {"data_dir": self.data_dir, "database_url": self.db_url, "subscriber_id": self.id,
                                  "registry_admin_token": TOKEN, "registry_partners": json.dumps(partners)}
        values.update(over)
        return RegistrySettings(**values)

    @contextlib.contextmanager
    def serve(self, partners: list[dict[str, str]], **over: Any) -> Iterator[str]:
        with serve_app(create_app(self.settings(partners, **over)), self.port) as url:
            yield url


def make_reg(id_: str, root: Path, db_url: str | None = None) -> Reg:
    data_dir = root / id_
    ensure_node_keys(data_dir)
    return Reg(id_, data_dir, db_url or f"sqlite+aiosqlite:///{data_dir / 'lakou.db'}", free_port())


def add(base: str, rec: dict[str, Any]) -> None:
    response = httpx.post(f"{base}/admin/participants", json=rec, headers=AUTH, timeout=10)
    assert response.status_code in (200, 201), response.text


def lookup(base: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{base}/lookup", json=body, headers=headers or {}, timeout=15)


@pytest.fixture
def pair(db_url: str, tmp_path: Path) -> Iterator[tuple[Reg, Reg]]:
    """Martinique (on both storage backends) and Guadeloupe, each the other's partner, running.
    Each reaches the other through a pass-through proxy that lists the lookups it carries."""
    mtq, glp = make_reg(MTQ_ID, tmp_path, db_url), make_reg(GLP_ID, tmp_path)
    mtq.reached_through = DelayingProxy(upstream_port=mtq.port).start()
    glp.reached_through = DelayingProxy(upstream_port=glp.port).start()
    try:
        with (mtq.serve([{**glp.partner(), "url": glp.reached_through.url}]),
              glp.serve([{**mtq.partner(), "url": mtq.reached_through.url}])):
            yield mtq, glp
    finally:
        mtq.reached_through.stop()
        glp.reached_through.stop()


def glp_bpp(subscriber_id: str = "bpp.glp.test", **over: Any) -> dict[str, Any]:
    return record(subscriber_id, "BPP", country="GLP", city="insee:97101", **over)


# ------------------------------------------------------------------ live federation


def test_a_local_miss_is_answered_by_the_partner_marked_with_its_origin_and_signed_by_us(
        pair: tuple[Reg, Reg]) -> None:
    mtq, glp = pair
    bpp = glp_bpp()
    add(glp.url, bpp)
    bap = record("bap.mtq.test", "BAP")
    add(mtq.url, bap)

    answer = lookup(mtq.url, {"type": "BPP", "domain": "lakou:retail", "city": "insee:97101", "country": "GLP"})
    assert answer.status_code == 200, answer.text
    [entry] = answer.json()
    assert entry["origin_registry"] == GLP_ID
    assert (entry["subscriber_id"], entry["ukId"], entry["signing_public_key"], entry["country"]) == (
        "bpp.glp.test", bpp["unique_key_id"], bpp["signing_public_key"], "GLP")
    # Every field the partner sent is kept: exactly the partner's own answer plus origin_registry.
    [at_partner] = lookup(glp.url, {"subscriber_id": "bpp.glp.test"}).json()
    assert "origin_registry" not in at_partner
    assert {k: v for k, v in entry.items() if k != "origin_registry"} == at_partner
    # Our registry signs what it relays: a node checks it with our key, not the partner's.
    verify_lookup_response(answer.content, answer.headers[RESPONSE_SIGNATURE_HEADER],
                           load_verify_key(mtq.public_key), registry_id=MTQ_ID)

    # Both ways: Guadeloupe finds the Martinique BAP by its key id, as a BPP verifying it would.
    [found] = lookup(glp.url, {"subscriber_id": "bap.mtq.test", "ukId": bap["unique_key_id"]}).json()
    assert found["origin_registry"] == MTQ_ID and found["signing_public_key"] == bap["signing_public_key"]

    # A local hit is answered locally: no origin mark.
    [local] = lookup(mtq.url, {"subscriber_id": "bap.mtq.test"}).json()
    assert "origin_registry" not in local

    # Nobody has it: an empty answer, though each registry names the other. Martinique asks
    # Guadeloupe once, and Guadeloupe, asked through federation, asks nobody further: no loop.
    assert glp.reached_through is not None and mtq.reached_through is not None
    to_glp, to_mtq = len(glp.reached_through.seen), len(mtq.reached_through.seen)
    assert lookup(mtq.url, {"subscriber_id": "nobody.test"}).json() == []
    assert len(glp.reached_through.seen) == to_glp + 1 and len(mtq.reached_through.seen) == to_mtq


def test_a_registry_asked_through_federation_never_asks_further(pair: tuple[Reg, Reg]) -> None:
    mtq, glp = pair
    add(glp.url, glp_bpp())
    # The same request as a partner would send it: hops=1, Guadeloupe not consulted.
    relayed = lookup(mtq.url, {"subscriber_id": "bpp.glp.test"}, {HOPS_HEADER: "1", VISITED_HEADER: "registry.x"})
    assert relayed.status_code == 200 and relayed.json() == []
    assert lookup(mtq.url, {"subscriber_id": "bpp.glp.test"}).json()[0]["origin_registry"] == GLP_ID

    bad = lookup(mtq.url, {"subscriber_id": "bpp.glp.test"}, {HOPS_HEADER: "many"})
    assert bad.status_code == 400 and HOPS_HEADER in bad.text and "integer" in bad.text


def test_a_partner_never_speaks_for_a_local_subscriber(pair: tuple[Reg, Reg]) -> None:
    mtq, glp = pair
    mine = record("bap.mtq.test", "BAP")
    add(mtq.url, mine)
    # Guadeloupe (or an attacker there) registers our BAP's id with a key of its own.
    forged = record("bap.mtq.test", "BAP", country="GLP")
    add(glp.url, forged)
    answer = lookup(mtq.url, {"subscriber_id": "bap.mtq.test", "ukId": forged["unique_key_id"]})
    assert answer.status_code == 200 and answer.json() == []
    [ours] = lookup(mtq.url, {"subscriber_id": "bap.mtq.test"}).json()
    assert ours["signing_public_key"] == mine["signing_public_key"]


def test_unsigned_forged_and_slow_partners_are_discarded_the_good_one_kept(tmp_path: Path) -> None:
    mtq, real = make_reg(MTQ_ID, tmp_path), make_reg("registry.glp2.test", tmp_path)
    glp_pair = generate_key_pairs()  # the key the operator configured for GLP_ID
    glp_key = load_signing_key(glp_pair.signing_private_key)
    impostor_key = load_signing_key(generate_key_pairs().signing_private_key)
    offered = {**glp_bpp("bpp.offered.test"), "status": "SUBSCRIBED"}
    release = threading.Event()  # the slow stand-in answers only once the test has its answer

    def stand_in(mode: str) -> FastAPI:
        """GLP_ID's registry answering /lookup: correctly, unsigned, with a wrong key, altered, slow."""
        app = FastAPI()

        @app.post("/lookup")
        async def answer() -> Response:
            while mode == "slow" and not release.is_set():
                await asyncio.sleep(0.05)
            if mode == "unsigned":
                return Response(json.dumps([offered]), media_type="application/json")
            signed = signed_json([offered], Signer(GLP_ID, "k1", impostor_key if mode == "wrong-key" else glp_key))
            if mode == "altered":  # signed, then changed on the way
                return Response(signed.body.replace(b"insee:97101", b"insee:97102"), media_type="application/json",
                                headers={RESPONSE_SIGNATURE_HEADER: signed.headers[RESPONSE_SIGNATURE_HEADER]})
            return signed

        return app

    with real.serve([]):
        add(real.url, glp_bpp("bpp.offered.test"))
        for mode in ("good", "unsigned", "wrong-key", "altered", "slow"):
            release.clear()
            with serve_app(stand_in(mode)) as url, capture_logs() as logs:
                partners = [{"id": GLP_ID, "url": url, "signing_public_key": glp_pair.signing_public_key},
                            real.partner()]
                # The slow one never answers in time (it waits for `release`): the lookup can only
                # come back, with the real partner's entry, if Martinique stopped waiting for it. Its
                # timeout is the default (2 s); 15 s for the others, never reached on a loaded machine.
                timeout = 2.0 if mode == "slow" else 15.0
                with mtq.serve(partners, registry_federation_timeout_seconds=timeout,
                               registry_federation_cache_seconds=0):
                    answer = lookup(mtq.url, {"subscriber_id": "bpp.offered.test"})
                    release.set()
            assert answer.status_code == 200, (mode, answer.text)
            origins = [e["origin_registry"] for e in answer.json()]
            discarded = [e for e in logs if e["event"] == "registry.federation_answer_discarded"]
            if mode == "good":  # the stand-in is believed when it signs right: the test can fail
                assert origins == [GLP_ID, "registry.glp2.test"] and not discarded, (origins, logs)
            else:  # only the real partner's verified entry comes back, and the refusal is logged
                assert origins == ["registry.glp2.test"], (mode, origins)
                assert [e["partner"] for e in discarded] == [GLP_ID], (mode, logs)


def _federation(tmp_path: Path, partners: list[Partner], clock: list[float]) -> tuple[Federation, Any]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    asyncio.run(upgrade(url))
    engine = create_engine(url)
    return Federation(MTQ_ID, partners, session_factory(engine), timeout=2, cache_seconds=60,
                      clock=lambda: clock[0]), engine


def test_answers_are_cached_briefly_empty_ones_too_and_bad_ones_logged(tmp_path: Path) -> None:
    glp = make_reg(GLP_ID, tmp_path)
    clock = [1000.0]
    with glp.serve([]):
        partner = parse_partners(json.dumps([glp.partner()]))[0]
        federation, engine = _federation(tmp_path, [partner], clock)

        async def ask(body: dict[str, Any]) -> list[dict[str, Any]]:
            return await federation.lookup(parse_filter(body), {})

        async def scenario() -> None:
            assert await ask({"subscriber_id": "bpp.glp.test"}) == []
            add(glp.url, glp_bpp())
            # Negative answer cached: the new BPP shows up only once the cache ages out.
            assert await ask({"subscriber_id": "bpp.glp.test"}) == []
            assert federation.partner_requests == 1
            clock[0] += 61
            [entry] = await ask({"subscriber_id": "bpp.glp.test"})
            assert entry["origin_registry"] == GLP_ID
            for _ in range(3):
                assert (await ask({"subscriber_id": "bpp.glp.test"}))[0]["subscriber_id"] == "bpp.glp.test"
            assert federation.partner_requests == 2
            await engine.dispose()

        asyncio.run(scenario())

    # The partner is gone: the failure is logged, not trusted, and retried only after a few seconds.
    with capture_logs() as logs:
        clock[0] += 61
        federation2, engine2 = _federation(tmp_path / "b", [partner], clock)
        asyncio.run(federation2.lookup(parse_filter({"subscriber_id": "x.test"}), {}))
        asyncio.run(engine2.dispose())
    assert any(e["event"] == "registry.federation_answer_discarded" and e["partner"] == GLP_ID
               and "unreachable" in e["reason"] for e in logs), logs


@pytest.mark.parametrize(("text", "needle"), [
    ("not json", "not valid JSON"),
    ('{"id": "x"}', "JSON list"),
    ('[{"id": "x", "url": "http://a"}]', "[0].signing_public_key is required"),
    ('[{"id": "x", "url": "ftp://a", "signing_public_key": "AAAA"}]', "absolute http(s) URL"),
    ('[{"id": "x", "url": "http://a", "signing_public_key": "AAAA"}]', "[0].signing_public_key"),
])
def test_a_wrong_partner_list_is_refused_at_start_saying_what_is_wrong(text: str, needle: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        parse_partners(text)
    assert needle in str(caught.value)
    reg = make_reg(MTQ_ID, tmp_path)
    with pytest.raises(ValueError):
        create_app(reg.settings([]).model_copy(update={"registry_partners": text}))


# ------------------------------------------------------------------ signed snapshots


def cli(*args: str, env: dict[str, str]) -> Any:
    return runner.invoke(cli_app, list(args), env=env)


def test_snapshot_export_import_serves_partner_entries_marked_and_keeps_local_ones(tmp_path: Path) -> None:
    mtq, glp = make_reg(MTQ_ID, tmp_path), make_reg(GLP_ID, tmp_path)
    shared = record("shared.test", "BAP")
    with glp.serve([]):
        add(glp.url, glp_bpp())
        add(glp.url, record("shared.test", "BAP", country="GLP"))
        pending = record("pending.glp.test", "BPP", country="GLP")
        add(glp.url, pending)
    # Only SUBSCRIBED entries travel.
    asyncio.run(_set_status(glp.db_url, "pending.glp.test", "UNSUBSCRIBED"))
    out = tmp_path / "glp-snapshot.json"
    exported = cli("registry", "export", "--out", str(out), "--data-dir", str(glp.data_dir), "--db", glp.db_url,
                   env={"LAKOU_SUBSCRIBER_ID": GLP_ID})
    assert exported.exit_code == 0, exported.output
    document = json.loads(out.read_text())
    ids = {p["subscriber_id"] for p in document["snapshot"]["participants"]}
    assert ids == {"bpp.glp.test", "shared.test"} and document["snapshot"]["registry_id"] == GLP_ID

    with mtq.serve([]):  # no live partner: the snapshot is the only source
        add(mtq.url, shared)
        imported = cli("registry", "import", str(out), "--partner-key", glp.public_key, "--partner-id", GLP_ID,
                       "--data-dir", str(mtq.data_dir), "--db", mtq.db_url, env={"LAKOU_SUBSCRIBER_ID": MTQ_ID})
        assert imported.exit_code == 0, imported.output
        assert "imported 1 participants from registry.glp.test" in imported.output
        assert "shared.test" in imported.output  # told it is not served
        [entry] = lookup(mtq.url, {"type": "BPP", "country": "GLP", "city": "insee:97101"}).json()
        assert entry["subscriber_id"] == "bpp.glp.test" and entry["origin_registry"] == GLP_ID
        [local] = lookup(mtq.url, {"subscriber_id": "shared.test"}).json()
        assert local["signing_public_key"] == shared["signing_public_key"] and "origin_registry" not in local
        assert lookup(mtq.url, {"subscriber_id": "pending.glp.test"}).json() == []


async def _set_status(db_url: str, subscriber_id: str, status: str) -> None:
    from sqlalchemy import text

    engine = create_engine(db_url)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE registry_participant SET status = :s WHERE subscriber_id = :i"),
                           {"s": status, "i": subscriber_id})
    await engine.dispose()


def test_a_tampered_or_foreign_snapshot_is_refused(tmp_path: Path) -> None:
    mtq, glp = make_reg(MTQ_ID, tmp_path), make_reg(GLP_ID, tmp_path)
    with glp.serve([]):
        add(glp.url, glp_bpp())
    out = tmp_path / "glp-snapshot.json"
    assert cli("registry", "export", "--out", str(out), "--data-dir", str(glp.data_dir), "--db", glp.db_url,
               env={"LAKOU_SUBSCRIBER_ID": GLP_ID}).exit_code == 0
    good = json.loads(out.read_text())
    env = {"LAKOU_SUBSCRIBER_ID": MTQ_ID}

    def try_import(document: Any, key: str = glp.public_key, *extra: str) -> Any:
        path = tmp_path / "candidate.json"
        path.write_text(json.dumps(document) if not isinstance(document, str) else document)
        return cli("registry", "import", str(path), "--partner-key", key, "--data-dir", str(mtq.data_dir),
                   "--db", mtq.db_url, *extra, env=env)

    swapped = json.loads(json.dumps(good))
    swapped["snapshot"]["participants"][0]["keys"][0]["signing_public_key"] = generate_key_pairs().signing_public_key
    moved = json.loads(json.dumps(good))
    moved["snapshot"]["participants"][0]["url"] = "https://evil.example/beckn"
    unsigned = {"snapshot": good["snapshot"]}
    cases = [
        (swapped, glp.public_key, (), "signature refused"),
        (moved, glp.public_key, (), "signature refused"),
        (unsigned, glp.public_key, (), "no signature"),
        (good, mtq.public_key, (), "signature refused"),  # not the partner's key
        (good, "not-a-key", (), "--partner-key"),
        (good, glp.public_key, ("--partner-id", "registry.other.test"), "not from the partner"),
        ("{not json", glp.public_key, (), "not readable JSON"),
        ({"hello": 1}, glp.public_key, (), "not a registry snapshot"),
    ]
    for document, key, extra, needle in cases:
        result = try_import(document, key, *extra)
        assert result.exit_code == 2, (needle, result.output)
        assert needle in result.output, (needle, result.output)
    assert not (mtq.data_dir / "federation" / "snapshots").exists()  # nothing was stored

    # A snapshot past its signature's validity cannot be imported.
    with pytest.raises(SnapshotError, match="expired"):
        verify_snapshot(good, load_verify_key(glp.public_key), now=time.time() + 31 * 86400)
    assert try_import(good).exit_code == 0
