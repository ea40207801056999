"""Inbound pipeline cost per request, as a ratio to one bare PyNaCl Ed25519 verify.

Both are measured in the same run on the same machine, so the ratio is comparable across
machines where absolute timings are not. The pipeline runs in-process (no HTTP) with the real key
resolver (warm cache) and a real store, so the figure is what the protocol core adds per message.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime

import httpx
from nacl.signing import SigningKey

from beckn.inbound import InboundPipeline, Role
from beckn.registry_client import KeyResolver, RegistryClient
from beckn.signing import Signer, body_digest, signing_string
from beckn.store.db import create_engine, session_factory, upgrade

BAP_ID = "bap.bench.lakou"


def _body(i: int) -> bytes:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    payload = {
        "context": {
            "domain": "retail", "action": "search", "version": "1.1.0",
            "location": {"city": {"code": "std:972"}, "country": {"code": "MTQ"}},
            "bap_id": BAP_ID, "bap_uri": "https://bap.bench.lakou/beckn",
            "transaction_id": str(uuid.uuid4()), "message_id": str(uuid.uuid4()),
            "timestamp": now, "ttl": "PT5M",
        },
        "message": {"intent": {"descriptor": {"name": f"ananas péi {i}"},
                               "fulfillment": {"stops": [{"location": {"gps": "14.6104, -61.0800"}}]},
                               "tags": [{"descriptor": {"code": "lang"}, "list": [{"value": "fr"}]}]}},
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _registry_transport(key: SigningKey, ukid: str) -> httpx.MockTransport:
    # Stands in for the registry: the resolver asks it once, then serves from cache.
    record = {"subscriber_id": BAP_ID, "subscriber_url": "https://bap.bench.lakou/beckn", "type": "BAP",
              "ukId": ukid, "status": "SUBSCRIBED", "domain": "retail", "country": "MTQ", "city": "std:972",
              "signing_public_key": base64.b64encode(bytes(key.verify_key)).decode(),
              "valid_from": "2020-01-01T00:00:00Z", "valid_until": "2099-01-01T00:00:00Z"}
    return httpx.MockTransport(lambda request: httpx.Response(200, json=[record]))


async def _pipeline_seconds_per_request(url: str, n: int) -> float:
    await upgrade(url)
    engine = create_engine(url)
    key, ukid = SigningKey.generate(), str(uuid.uuid4())
    client = RegistryClient("http://registry.bench", http=httpx.AsyncClient(transport=_registry_transport(key, ukid)))
    pipeline = InboundPipeline(sessions=session_factory(engine), resolver=KeyResolver(client),
                               receiver_id="bpp.bench.lakou", role=Role.BPP)
    signer = Signer(BAP_ID, ukid, key)
    requests = []
    for i in range(n + 1):
        body = _body(i)
        requests.append((body, {"Authorization": signer.sign(body), "Content-Type": "application/json"}))
    # warm-up: fills the key cache and the connection pool
    assert (await pipeline.handle("search", *requests[0])).response.acked
    start = time.perf_counter()
    for body, headers in requests[1:]:
        result = await pipeline.handle("search", body, headers)
        assert result.response.acked, result.response.body
    elapsed = time.perf_counter() - start
    await client.aclose()
    await engine.dispose()
    return elapsed / n


def _bare_verify_seconds(n: int) -> float:
    key = SigningKey.generate()
    message = signing_string(1, 2, body_digest(_body(0)))
    signature = key.sign(message).signature
    verify_key = key.verify_key
    start = time.perf_counter()
    for _ in range(n):
        verify_key.verify(message, signature)
    return (time.perf_counter() - start) / n


def run(n: int = 2000) -> dict[str, float]:
    results: dict[str, float] = {}
    bare = _bare_verify_seconds(n * 5)
    results["bare_pynacl_verify_us"] = bare * 1e6
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = asyncio.run(_pipeline_seconds_per_request(f"sqlite+aiosqlite:///{tmp}/bench.db", n))
    results["pipeline_sqlite_us"] = sqlite * 1e6
    results["pipeline_sqlite_ratio"] = sqlite / bare
    pg = os.environ.get("LAKOU_BENCH_POSTGRES_URL")
    if pg:
        postgres = asyncio.run(_pipeline_seconds_per_request(pg, n))
        results["pipeline_postgres_us"] = postgres * 1e6
        results["pipeline_postgres_ratio"] = postgres / bare
    return results


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name:28} {value:10.1f}")
