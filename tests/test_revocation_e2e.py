"""Network-wide revocation, with real processes: once the operator revokes a key at the registry,
every node refuses it within LAKOU_LOOKUP_CACHE_SECONDS (their key lookup cache), however warm
their cache was.

Registry, gateway, BPP and BAP run as `lakou serve` processes with LAKOU_LOOKUP_CACHE_SECONDS=2.
The test signs Beckn requests itself with the keys in each node's data dir (node-keys.json), as
that node would, so that it can tell "accepted" (anything but 401) from "refused" (401) at will.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from beckn.cli import app as cli_app
from beckn.keyfile import KEY_FILE
from beckn.keys import load_signing_key
from beckn.signing import Signer
from network import Network, ServiceProcess

CACHE_SECONDS = 2
# What the latency may exceed the cache lifetime by: one poll interval, one lookup, process noise.
MARGIN_SECONDS = 3.0
DOMAIN = "lakou:retail"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    network = Network(tmp_path_factory.mktemp("revocation"))
    env = {"LAKOU_LOOKUP_CACHE_SECONDS": str(CACHE_SECONDS)}
    try:
        registry = network.start("registry", extra_env=env)
        network.wait_ready(registry)
        gateway = network.start("gateway", extra_env=env)
        bpp = network.start("bpp", extra_env=env | {"LAKOU_BPP_CATALOGUE": "demo"})
        bap = network.start("bap", extra_env=env)
        network.wait_ready(gateway, bpp, bap)
        yield {"net": network, "registry": registry, "gateway": gateway, "bpp": bpp, "bap": bap}
    finally:
        network.stop_all()


def signer_of(node: ServiceProcess) -> Signer:
    keys = json.loads((node.data_dir / KEY_FILE).read_text())
    return Signer(node.env["LAKOU_SUBSCRIBER_ID"], keys["unique_key_id"], load_signing_key(keys["signing_private_key"]))


def context(action: str, bap: ServiceProcess, bpp: ServiceProcess | None = None) -> dict[str, Any]:
    now = datetime.now(UTC)
    ctx = {
        "domain": DOMAIN, "action": action, "version": "1.1.0",
        "location": {"country": {"code": "MTQ"}, "city": {"code": "insee:97209"}},
        "bap_id": bap.env["LAKOU_SUBSCRIBER_ID"], "bap_uri": f"{bap.url}/beckn",
        "transaction_id": str(uuid.uuid4()), "message_id": str(uuid.uuid4()),
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z", "ttl": "PT30S",
    }
    if bpp is not None:
        ctx |= {"bpp_id": bpp.env["LAKOU_SUBSCRIBER_ID"], "bpp_uri": f"{bpp.url}/beckn"}
    return ctx


def search(n: dict[str, Any]) -> bytes:
    return json.dumps({"context": context("search", n["bap"]),
                       "message": {"intent": {"item": {"descriptor": {"name": "banane"}}}}}).encode()


def select(n: dict[str, Any]) -> bytes:
    return json.dumps({"context": context("select", n["bap"], n["bpp"]), "message": {"order": {
        "provider": {"id": "unknown-provider"}, "items": [{"id": "unknown-item", "quantity": {
            "selected": {"count": 1}}}]}}}).encode()


def on_search(n: dict[str, Any]) -> bytes:
    return json.dumps({"context": context("on_search", n["bap"], n["bpp"]), "message": {"catalog": {
        "descriptor": {"name": "Ferme"}, "providers": []}}}).encode()


def send(target: ServiceProcess, action: str, body: bytes, signer: Signer) -> httpx.Response:
    return httpx.post(f"{target.url}/beckn/{action}", content=body, timeout=10,
                      headers={"Content-Type": "application/json", "Authorization": signer.sign(body)})


Probe = Callable[[], httpx.Response]


def accepted(probe: Probe, what: str) -> None:
    response = probe()
    assert response.status_code == 200, f"{what} not accepted before any revocation: {response.text}"
    assert response.json()["message"]["ack"]["status"] == "ACK", response.text


def refused_within(probe: Probe, since: float, what: str, logs: Callable[[], str]) -> float:
    """Poll until `probe` answers 401; the seconds since the revocation, failing past the bound."""
    bound = CACHE_SECONDS + MARGIN_SECONDS
    while True:
        response = probe()
        elapsed = time.monotonic() - since
        if response.status_code == 401:
            message = response.json()["error"]["message"]
            assert "revoked" in message or "no key" in message, message
            return elapsed
        assert elapsed < bound, f"{what} still answered {response.status_code} {elapsed:.1f} s after the " \
                                f"revocation (bound {bound} s): {response.text}\n{logs()}"
        time.sleep(0.2)


def revoke(n: dict[str, Any], node: ServiceProcess, **extra: str) -> float:
    """Revoke `node`'s key with `lakou registry revoke` over the admin API; when it was done."""
    keys = json.loads((node.data_dir / KEY_FILE).read_text())
    result = CliRunner().invoke(cli_app, [
        "registry", "revoke", node.env["LAKOU_SUBSCRIBER_ID"], "--key", keys["unique_key_id"], "--yes",
        "--reason", "revocation test", "--registry-url", n["registry"].url],
        env={"LAKOU_REGISTRY_ADMIN_TOKEN": n["net"].admin_token, **extra})
    assert result.exit_code == 0, result.output
    return time.monotonic()


def test_a_revoked_bap_is_refused_by_the_gateway_and_the_bpp(net: dict[str, Any]) -> None:
    bap = signer_of(net["bap"])
    to_gateway: Probe = lambda: send(net["gateway"], "search", search(net), bap)  # noqa: E731
    to_bpp: Probe = lambda: send(net["bpp"], "select", select(net), bap)  # noqa: E731
    # Both nodes have now looked the BAP's key up and hold it in their caches.
    accepted(to_gateway, "the BAP's search at the gateway")
    accepted(to_bpp, "the BAP's select at the BPP")
    accepted(to_gateway, "the BAP's search at the gateway (cached)")

    done = revoke(net, net["bap"])

    gateway_latency = refused_within(to_gateway, done, "the gateway", net["net"].logs)
    bpp_latency = refused_within(to_bpp, done, "the BPP", net["net"].logs)
    assert max(gateway_latency, bpp_latency) < CACHE_SECONDS + MARGIN_SECONDS


def test_a_revoked_bpp_has_its_callbacks_refused_by_the_bap(net: dict[str, Any]) -> None:
    bpp = signer_of(net["bpp"])
    to_bap: Probe = lambda: send(net["bap"], "on_search", on_search(net), bpp)  # noqa: E731
    accepted(to_bap, "the BPP's on_search at the BAP")

    done = revoke(net, net["bpp"])

    refused_within(to_bap, done, "the BAP", net["net"].logs)
    # The registry itself no longer lists the key: the refusal is the registry's decision.
    lookup = httpx.post(f"{net['registry'].url}/lookup", json={"subscriber_id": bpp.subscriber_id}, timeout=5)
    assert lookup.json() == []
