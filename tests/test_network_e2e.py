"""The whole network end to end: real processes on free ports, talking HTTP, as deployed.

Registry, gateway, two BPPs (one answering search through the gateway, one directly) and a BAP
run as `lakou serve` processes; the citizen journey goes through the BAP's API exactly as
`lakou demo` runs it.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from rich.console import Console

from beckn.cli.demo import JourneyFailed, run_journey
from conftest import TRANSACTION_YAML, free_port
from network import Network, ServiceProcess
from test_conformance import Spec


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    net = Network(tmp_path_factory.mktemp("network"))
    try:
        registry = net.start("registry")
        net.wait_ready(registry)
        gateway = net.start("gateway")
        # Small pages: a search answer of several items comes as several on_search, through the gateway.
        bpp = net.start("bpp", extra_env={"LAKOU_BPP_CATALOGUE": "demo", "LAKOU_BPP_ON_SEARCH_VIA": "gateway",
                                          "LAKOU_BPP_SEARCH_PAGE_ITEMS": "2"})
        bpp2 = net.start("bpp", name="bpp2", extra_env={"LAKOU_BPP_CATALOGUE": "demo",
                                                          "LAKOU_BPP_ON_SEARCH_VIA": "direct"})
        bap = net.start("bap")
        net.wait_ready(gateway, bpp, bpp2, bap)
        yield {"net": net, "registry": registry, "gateway": gateway, "bpp": bpp, "bpp2": bpp2, "bap": bap}
    finally:
        net.stop_all()


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


def _bpp_named(network: dict[str, Any], bpp_id: str) -> ServiceProcess:
    for name in ("bpp", "bpp2"):
        if network[name].env["LAKOU_SUBSCRIBER_ID"] == bpp_id:
            return network[name]
    raise AssertionError(f"unknown bpp_id {bpp_id}")


def test_every_service_is_healthy_and_registered(network: dict[str, Any]) -> None:
    lookup = httpx.post(network["registry"].url + "/lookup", json={"country": "MTQ"}, timeout=5).json()
    registered = {(entry["subscriber_id"], entry["type"]) for entry in lookup}
    assert {("gateway.lakou.localhost", "BG"), ("bpp.lakou.localhost", "BPP"),
            ("bpp2.lakou.localhost", "BPP"), ("bap.lakou.localhost", "BAP")} <= registered
    for name in ("registry", "gateway", "bpp", "bpp2", "bap"):
        health = httpx.get(network[name].url + "/health", timeout=5)
        assert health.status_code == 200 and health.json()["database"] == "ok", (name, health.text)


def test_citizen_journey_creates_the_order_at_the_bpp(network: dict[str, Any]) -> None:
    try:
        result = run_journey(network["bap"].url, query="vivaneau", lang="fr", quantity=2, timeout=20,
                             console=_quiet())
    except JourneyFailed as failure:
        pytest.fail(f"journey failed at {failure.step}: {failure.reason}\n{network['net'].logs()}")
    offer = result["offer"]
    assert "vivaneau" in offer["item"]["name"].lower()
    assert offer["provider"]["city"] == "insee:97222" and offer["provider"]["city_name"] == "Le Robert"
    bpp = _bpp_named(network, offer["bpp_id"])
    response = httpx.get(f"{bpp.url}/api/v1/orders/{result['order_id']}",
                         headers={"Authorization": f"Bearer {network['net'].bpp_admin_token}"}, timeout=5)
    assert response.status_code == 200, response.text
    order = response.json()
    lines = {(line["id"], line["quantity"]) for line in order["items"]}
    assert lines == {(offer["item"]["id"], 2)}
    assert order["provider_id"] == offer["provider"]["id"] and order["bap_id"] == "bap.lakou.localhost"
    unit = Decimal(offer["item"]["price"]["value"])
    assert Decimal(order["total"]) == Decimal(result["quote"]["total"]["value"]) == unit * 2
    assert order["currency"] == "EUR"
    assert result["status"]["order_id"] == result["order_id"]
    # The order is not readable without the operator's token.
    anonymous = httpx.get(f"{bpp.url}/api/v1/orders/{result['order_id']}", timeout=5)
    assert anonymous.status_code in (401, 403)


def test_a_catalogue_paged_over_several_on_search_reaches_the_citizen_whole(network: dict[str, Any]) -> None:
    with httpx.Client(base_url=network["bap"].url, timeout=30) as client:
        client.headers["Authorization"] = f"Bearer {client.post('/api/v1/sessions').json()['token']}"
        transaction_id = client.post("/api/v1/searches", json={"query": "rhum", "lang": "fr",
                                                               "ttl_seconds": 4}).json()["transaction_id"]
        page: dict[str, Any] = {"complete": False}
        while not page["complete"]:
            page = client.get(f"/api/v1/searches/{transaction_id}/results", params={"wait_ms": 5000}).json()
    shown = sorted(o["item"]["id"] for o in page["offers"] if o["bpp_id"] == "bpp.lakou.localhost")
    sent = network["bpp"].rows(
        f"SELECT body FROM outbox_message WHERE action = 'on_search' AND transaction_id = '{transaction_id}'")
    assert len(sent) >= 2, f"the answer should have been paged: {len(sent)} on_search"
    items = [item["id"] for (body,) in sent for provider in json.loads(body)["message"]["catalog"]["providers"]
             for item in provider["items"]]
    assert len(items) == len(set(items)) and shown == sorted(items)


def test_a_bpp_killed_mid_search_does_not_break_the_search(network: dict[str, Any]) -> None:
    bap = network["bap"].url
    with httpx.Client(base_url=bap, timeout=30) as client:
        token = client.post("/api/v1/sessions").json()["token"]
        client.headers["Authorization"] = f"Bearer {token}"
        started = client.post("/api/v1/searches", json={"query": "rhum", "lang": "fr"})
        assert started.status_code == 202, started.text
        network["bpp2"].kill()
        transaction_id = started.json()["transaction_id"]
        offers: list[dict[str, Any]] = []
        deadline = time.monotonic() + 20
        # Until a rum from the live BPP shows: its answer may come in several pages.
        while time.monotonic() < deadline and not any(
                o["bpp_id"] == "bpp.lakou.localhost" and "rhum" in o["item"]["name"].lower() for o in offers):
            page = client.get(f"/api/v1/searches/{transaction_id}/results", params={"wait_ms": 2000})
            assert page.status_code == 200, page.text
            offers = page.json()["offers"]
        survivors = [o for o in offers if o["bpp_id"] == "bpp.lakou.localhost"]
        assert survivors, f"no offer from the live BPP:\n{network['net'].logs()}"
        rums = [o for o in survivors if "rhum" in o["item"]["name"].lower()]
        assert rums, survivors
        # The transaction goes on with the BPP that is still there.
        chosen = rums[0]
        selected = client.post(f"/api/v1/transactions/{transaction_id}/select", json={
            "bpp_id": chosen["bpp_id"], "provider_id": chosen["provider"]["id"],
            "items": [{"id": chosen["item"]["id"], "quantity": 1}], "wait_ms": 15000})
        assert selected.status_code == 200 and selected.json()["quote"]["total"]["value"], selected.text
    assert network["gateway"].process.poll() is None


def test_every_message_on_the_wire_validates_against_the_beckn_spec(network: dict[str, Any]) -> None:
    with TRANSACTION_YAML.open(encoding="utf-8") as f:
        spec = Spec(yaml.safe_load(f))
    seen: dict[str, int] = {}
    problems: list[str] = []
    for name in ("gateway", "bpp", "bpp2", "bap"):
        service: ServiceProcess = network[name]
        sent = service.rows("SELECT action, body FROM outbox_message")
        received = service.rows("SELECT action, body, response_body FROM inbound_message")
        for action, body in sent:
            seen[action] = seen.get(action, 0) + 1
            errors = [e.message for e in spec.request_validator(action).iter_errors(json.loads(body))]
            if errors:
                problems.append(f"{name} sent {action}: {errors[:3]}")
        for action, body, response in received:
            errors = [e.message for e in spec.request_validator(action).iter_errors(json.loads(body))]
            errors += [e.message for e in spec.response_validator(action).iter_errors(json.loads(response))]
            if errors:
                problems.append(f"{name} received {action}: {errors[:3]}")
    assert not problems, "\n".join(problems)
    # The journey above really crossed the wire: every action of it is in the logs.
    for action in ("search", "on_search", "select", "on_select", "init", "on_init", "confirm",
                   "on_confirm", "status", "on_status"):
        assert seen.get(action), f"no {action} was sent: {seen}"


# ---------------------------------------------------------------------------- lakou up / demo


def _lakou(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "beckn.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def test_lakou_up_runs_the_network_and_lakou_demo_completes_then_ctrl_c_stops_it(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("registry", "gateway", "bpp", "bap", "connect",
                                           "guadeloupe-registry", "guadeloupe-bpp")}
    up = _lakou("up", "--data-dir", str(tmp_path / "data"), "--with-guadeloupe",
                *(a for n, p in ports.items() for a in (f"--{n}-port", str(p))), start_new_session=True)
    try:
        # Only a guard against a hang: `lakou up` starts seven services one after the other and
        # exits by itself if one is not healthy within its start-up timeout. On a loaded two-core
        # machine the whole start took 110 s once, so the guard is generous.
        deadline = time.monotonic() + 300
        output = ""
        assert up.stdout is not None
        while "Ctrl-C stops the network" not in output:
            line = up.stdout.readline()
            if not line and up.poll() is not None:
                pytest.fail(f"lakou up exited with {up.returncode}:\n{output}")
            output += line
            assert time.monotonic() < deadline, output
        for name, port in ports.items():
            assert f"http://127.0.0.1:{port}" in output, f"{name} URL not printed:\n{output}"
        # Keys were generated and registered, SQLite files created under the data dir.
        for name in ("registry", "gateway", "bpp", "bap", "registry-glp", "bpp-glp"):
            assert (tmp_path / "data" / name / "lakou.db").exists()
        assert (tmp_path / "data" / "bpp" / "node-keys.json").stat().st_mode & 0o077 == 0

        demo = subprocess.run([sys.executable, "-m", "beckn.cli", "demo", "--bap-url", f"http://127.0.0.1:{ports['bap']}",
                               "--query", "pain au beurre", "--timeout", "20"],
                              capture_output=True, text=True, timeout=120)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        for step in ("1. search", "2. select", "3. init", "4. confirm", "5. status", "journey complete"):
            assert step in demo.stdout, demo.stdout

        # The partner territory: a Martinique citizen orders from a shop registered in Guadeloupe only.
        federated = subprocess.run([sys.executable, "-m", "beckn.cli", "demo", "--bap-url",
                                    f"http://127.0.0.1:{ports['bap']}", "--query", "confiture goyave",
                                    "--city", "insee:97120", "--country", "GLP", "--timeout", "20"],
                                   capture_output=True, text=True, timeout=120)
        assert federated.returncode == 0, federated.stdout + federated.stderr
        assert "Lolo de la Darse" in federated.stdout and "journey complete" in federated.stdout

        nothing = subprocess.run([sys.executable, "-m", "beckn.cli", "demo", "--bap-url", f"http://127.0.0.1:{ports['bap']}",
                                  "--query", "tondeuse à gazon nucléaire", "--timeout", "4"],
                                 capture_output=True, text=True, timeout=60)
        assert nothing.returncode == 1 and "demo failed at step 'search'" in nothing.stdout, nothing.stdout
    finally:
        up.send_signal(signal.SIGINT)
        try:
            rest, _ = up.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()
            raise
    assert up.returncode == 0, rest
    assert "Lakou network stopped" in rest
    for port in ports.values():
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)


def test_lakou_demo_names_the_failing_step_when_no_network_runs() -> None:
    port = free_port()
    demo = subprocess.run([sys.executable, "-m", "beckn.cli", "demo", "--bap-url", f"http://127.0.0.1:{port}"],
                          capture_output=True, text=True, timeout=60)
    assert demo.returncode == 1
    assert "demo failed at step 'session'" in demo.stdout and f"127.0.0.1:{port}" in demo.stdout
