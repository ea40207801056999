"""`lakou up` (the whole demo network on one machine) and `lakou demo` (a citizen journey)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from beckn.cli.serve import DEFAULT_PORTS, Service

console = Console()

# How each node gets into the registry. BAP and BPP onboard themselves like any participant: a signed
# /subscribe answered through on_subscribe, auto-approved by the registry's policy. The gateway is
# vetted by the operator (the registry keeps a BG UNDER_SUBSCRIPTION), so `up`, being the operator
# here, registers it with the admin token.
SUBSCRIBING = (Service.bpp, Service.bap)
_LOOPBACK_HOSTS = ("localhost", "::1")


@dataclass
class PlannedNode:
    """One process of the demo network: which service, where, with which environment."""

    name: str  # also its data directory and log file name, e.g. "bpp" or "registry-glp"
    service: Service
    port: int
    env: dict[str, str]
    registry: str | None = None  # the registry node it joins (None for a registry)

    @property
    def subscribes(self) -> bool:
        return self.env.get("LAKOU_REGISTRY_SUBSCRIBE") == "true"


@dataclass
class RunningService:
    name: str
    service: Service
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# The partner territory `lakou up --with-guadeloupe` adds: its own registry, federated with ours,
# and one BPP registered there only (Pointe-à-Pitre and Saint-Claude merchants).
GUADELOUPE = "glp"
GUADELOUPE_COUNTRY = "GLP"
GUADELOUPE_PORTS = {Service.registry: 8101, Service.bpp: 8301}


def _secret_file(path: Path) -> str:
    """A random token kept in a private file, so restarts reuse it."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token


def plan_network(
    data_dir: Path,
    host: str,
    ports: dict[Service, int],
    catalogue: str,
    *,
    guadeloupe_ports: dict[Service, int] | None = None,
) -> list[PlannedNode]:
    """The processes of a one-machine network under `data_dir`, in start order.

    Start order matters: every node registers itself at its registry, and the BAP finds the
    gateway there."""
    admin_token = _secret_file(data_dir / "secrets" / "registry-admin-token")
    bpp_token = _secret_file(data_dir / "secrets" / "bpp-admin-token")
    base = {k: v for k, v in os.environ.items() if not k.startswith("LAKOU_")}

    def node(name: str, service: Service, port: int, registry: str | None, registry_port: int,
             **extra: str) -> PlannedNode:
        env = dict(base)
        env.update(
            LAKOU_DATA_DIR=str((data_dir / name).resolve()),
            LAKOU_REGISTRY_URL=f"http://{host}:{registry_port}",
            LAKOU_PUBLIC_URL=f"http://{host}:{port}",
            LAKOU_SUBSCRIBER_ID=f"{name}.lakou.localhost",
        )
        # The registry accepts a `*.lakou.localhost` id with a loopback URL only; on another
        # interface the nodes keep registering through the admin API.
        if service in SUBSCRIBING and _is_loopback(host):
            env.update(LAKOU_REGISTRY_SUBSCRIBE="true")
        else:
            env.update(LAKOU_REGISTRY_ADMIN_TOKEN=admin_token)
        if service is Service.registry:
            env.update(LAKOU_REGISTRY_AUTO_APPROVE="true")
        if service is Service.bpp:
            # The sandbox processor: demo merchants accepting PRE-ORDER give checkout links that
            # "pay" at the press of a button (bpp.payments.sandbox); no money moves.
            env.update(LAKOU_BPP_ADMIN_TOKEN=bpp_token, LAKOU_BPP_PAYMENT_PROCESSOR="sandbox")
        env.update(extra)
        return PlannedNode(name, service, port, env, registry)

    registry_port = ports[Service.registry]
    plan = [node("registry", Service.registry, registry_port, None, registry_port)]
    if guadeloupe_ports is not None:
        glp_registry = f"registry-{GUADELOUPE}"
        glp_port = guadeloupe_ports[Service.registry]
        plan.append(node(glp_registry, Service.registry, glp_port, None, glp_port,
                         LAKOU_COUNTRY=GUADELOUPE_COUNTRY))
        _federate(plan[0], plan[1], host, data_dir)
    plan += [
        node("gateway", Service.gateway, ports[Service.gateway], "registry", registry_port),
        node("bpp", Service.bpp, ports[Service.bpp], "registry", registry_port, LAKOU_BPP_CATALOGUE=catalogue),
        node("bap", Service.bap, ports[Service.bap], "registry", registry_port),
    ]
    # Martinique Connect (the OpenID Provider) is no Beckn participant: no registry, no admin token.
    connect_port = ports.get(Service.connect, DEFAULT_PORTS[Service.connect])
    connect = node("connect", Service.connect, connect_port, None, registry_port,
                   LAKOU_CONNECT_ISSUER=f"http://{host}:{connect_port}")
    connect.env.pop("LAKOU_REGISTRY_ADMIN_TOKEN", None)
    plan.append(connect)
    if guadeloupe_ports is not None:
        plan.append(node(f"bpp-{GUADELOUPE}", Service.bpp, guadeloupe_ports[Service.bpp], f"registry-{GUADELOUPE}",
                         guadeloupe_ports[Service.registry], LAKOU_COUNTRY=GUADELOUPE_COUNTRY,
                         LAKOU_BPP_CATALOGUE="demo-guadeloupe"))
    return plan


def _federate(first: PlannedNode, second: PlannedNode, host: str, data_dir: Path) -> None:
    """Make two registries each other's trusted partner (their keys are made now, before they start)."""
    from beckn.keyfile import ensure_node_keys

    def partner(registry: PlannedNode) -> str:
        keys = ensure_node_keys(data_dir / registry.name)
        return json.dumps([{"id": registry.env["LAKOU_SUBSCRIBER_ID"], "url": f"http://{host}:{registry.port}",
                            "signing_public_key": keys["signing_public_key"]}])

    first.env["LAKOU_REGISTRY_PARTNERS"] = partner(second)
    second.env["LAKOU_REGISTRY_PARTNERS"] = partner(first)


def network_environment(data_dir: Path, host: str, ports: dict[Service, int], catalogue: str) -> dict[Service, dict[str, str]]:
    """Each service's LAKOU_* environment for a one-machine network under `data_dir`."""
    return {planned.service: planned.env for planned in plan_network(data_dir, host, ports, catalogue)}


def _is_loopback(host: str) -> bool:
    return host in _LOOPBACK_HOSTS or host.startswith("127.")


def pin_registry_key(nodes: list[PlannedNode], registry: PlannedNode, registry_url: str) -> None:
    """Give every node subscribing at `registry` its keys, read from the registry `up` just started,
    so that the nodes check its on_subscribe signatures against a pinned key (no trust on first use)."""
    import httpx

    published = httpx.get(registry_url + "/registry-key", timeout=5).raise_for_status().json()
    for planned in nodes:
        if planned.registry == registry.name and planned.subscribes:
            planned.env.update(
                LAKOU_REGISTRY_SIGNING_PUBLIC_KEY=published["signing_public_key"],
                LAKOU_REGISTRY_ENCR_PUBLIC_KEY=published["encr_public_key"],
                LAKOU_REGISTRY_SUBSCRIBER_ID=published["subscriber_id"],
            )


def _die_with_parent() -> None:
    """Linux: a service gets SIGTERM if `lakou up` itself is killed, so no orphan keeps a port."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _start(planned: PlannedNode, host: str, log_dir: Path) -> RunningService:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{planned.name}.log"
    log_file = log_path.open("ab")
    command = [sys.executable, "-m", "beckn.cli", "serve", planned.service.value, "--host", host,
               "--port", str(planned.port)]
    # Own process group: a Ctrl-C reaches `lakou up` alone, which then stops the services in order.
    process = subprocess.Popen(command, env=planned.env, stdout=log_file, stderr=subprocess.STDOUT,
                               start_new_session=True, preexec_fn=_die_with_parent)
    log_file.close()
    return RunningService(planned.name, planned.service, planned.port, process, log_path)


def _wait_healthy(running: RunningService, deadline: float, *, need_registered: bool) -> str | None:
    """None once /health says ok (and registered), else why not."""
    import httpx

    reason = "no answer"
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            return f"exited with code {running.process.returncode}"
        try:
            response = httpx.get(running.url + "/health", timeout=1.0)
            body = response.json()
            if response.status_code == 200 and (not need_registered or body.get("registered", True)):
                return None
            reason = f"health {response.status_code}: {body}"
        except (httpx.HTTPError, ValueError) as exc:
            reason = f"{type(exc).__name__}"
        time.sleep(0.2)
    return f"not healthy in time ({reason})"


def _stop(services: list[RunningService]) -> None:
    for running in reversed(services):
        if running.process.poll() is None:
            running.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for running in reversed(services):
        try:
            running.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            running.process.kill()
            running.process.wait()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def register(app: typer.Typer) -> None:
    @app.command("up")
    def up(
        data_dir: Path = typer.Option(Path("data"), help="Where each service keeps its SQLite store, keys and log."),
        host: str = typer.Option("127.0.0.1", help="Interface every service listens on."),
        registry_port: int = typer.Option(DEFAULT_PORTS[Service.registry]),
        gateway_port: int = typer.Option(DEFAULT_PORTS[Service.gateway]),
        bpp_port: int = typer.Option(DEFAULT_PORTS[Service.bpp]),
        bap_port: int = typer.Option(DEFAULT_PORTS[Service.bap]),
        connect_port: int = typer.Option(DEFAULT_PORTS[Service.connect]),
        catalogue: str = typer.Option("demo", help="BPP catalogue seed: 'demo', a JSON file, or '' for none."),
        with_guadeloupe: bool = typer.Option(
            False, "--with-guadeloupe",
            help="Also run a partner territory: a Guadeloupe registry federated with ours, and a BPP registered there."),
        guadeloupe_registry_port: int = typer.Option(GUADELOUPE_PORTS[Service.registry]),
        guadeloupe_bpp_port: int = typer.Option(GUADELOUPE_PORTS[Service.bpp]),
        startup_timeout: float = typer.Option(60.0, help="Seconds each service may take to become healthy."),
    ) -> None:
        """Run the whole Martinique demo network (registry, gateway, BPP, BAP, Martinique Connect) until Ctrl-C."""
        ports = {Service.registry: registry_port, Service.gateway: gateway_port,
                 Service.bpp: bpp_port, Service.bap: bap_port, Service.connect: connect_port}
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        partner_ports = ({Service.registry: guadeloupe_registry_port, Service.bpp: guadeloupe_bpp_port}
                         if with_guadeloupe else None)
        plan = plan_network(data_dir, host, ports, catalogue, guadeloupe_ports=partner_ports)
        log_dir = data_dir / "logs"
        services: list[RunningService] = []

        def on_signal(signum: int, frame: object) -> None:  # noqa: ARG001
            raise KeyboardInterrupt

        # Installed explicitly: a shell starting us in the background leaves SIGINT ignored.
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        try:
            for planned in plan:
                with console.status(f"starting {planned.name} on port {planned.port}..."):
                    running = _start(planned, host, log_dir)
                    services.append(running)
                    problem = _wait_healthy(running, time.monotonic() + startup_timeout,
                                            need_registered=planned.service is not Service.registry)
                if problem is None and planned.service is Service.registry:
                    try:
                        pin_registry_key(plan, planned, running.url)
                    except Exception as exc:  # noqa: BLE001 - reported as a start failure below
                        problem = f"its key could not be read at /registry-key: {type(exc).__name__}: {exc}"
                if problem is not None:
                    console.print(f"[red]{planned.name} failed to start: {problem}[/red]")
                    console.print(_tail(running.log_path), markup=False, highlight=False)
                    console.print(f"full log: {running.log_path}")
                    _stop(services)
                    raise typer.Exit(1)
            table = Table(title="Lakou Martinique demo network", show_lines=False)
            table.add_column("service")
            table.add_column("URL")
            table.add_column("API docs")
            for running in services:
                table.add_row(running.name, running.url, running.url + "/docs")
            console.print(table)
            console.print(f"data: {data_dir.resolve()}   logs: {log_dir.resolve()}")
            if with_guadeloupe:
                console.print("Guadeloupe partner: try [bold]lakou demo --query 'confiture goyave' "
                              "--city insee:97120 --country GLP[/bold]")
            console.print("Try [bold]lakou demo[/bold] in another terminal. Ctrl-C stops the network.")
            while True:
                for running in services:
                    if running.process.poll() is not None:
                        console.print(f"[red]{running.name} exited with code "
                                      f"{running.process.returncode}[/red]")
                        console.print(_tail(running.log_path), markup=False, highlight=False)
                        _stop(services)
                        raise typer.Exit(1)
                time.sleep(0.5)
        except KeyboardInterrupt:
            with console.status("stopping..."):
                _stop(services)
            console.print("Lakou network stopped.")

    @app.command("demo")
    def demo(
        bap_url: str = typer.Option(f"http://127.0.0.1:{DEFAULT_PORTS[Service.bap]}", help="The BAP's base URL."),
        query: str = typer.Option("poisson", help="What the citizen searches for."),
        lang: str = typer.Option("fr", help="Language of the search: fr, en, es or de."),
        quantity: int = typer.Option(1, min=1, help="How many of the chosen item to order."),
        timeout: float = typer.Option(15.0, help="Seconds to wait for search results and each answer."),
        city: str = typer.Option(None, help="Search in this commune, e.g. insee:97209 (default: the whole territory)."),
        country: str = typer.Option(None, help="Search in this territory, e.g. GLP (default: the BAP's, MTQ)."),
    ) -> None:
        """Run a citizen journey (search, select, init, confirm, status) against a running network."""
        from beckn.cli.demo import JourneyFailed, run_journey

        try:
            run_journey(bap_url, query=query, lang=lang, quantity=quantity, timeout=timeout, console=console,
                        city=city, country=country)
        except JourneyFailed as failure:
            console.print(f"[red]demo failed at step '{failure.step}': {failure.reason}[/red]")
            raise typer.Exit(1) from None
