"""The log side of witnessing: ask the peers we transact with to cosign our checkpoints (issue 8).

C2SP tlog-witness / tlog-cosignature; the witness side is beckn/tlog/witness.py. Every round
(`Cosigning.run`, each checkpoint interval) the node takes its latest signed checkpoint and submits
it to each *witness*, i.e. each recent peer:

* **Who.** The distinct `peer` subscriber ids of the log's most recent entries (the last
  `recent_entries`, newest first, at most `max_peers`, never ourselves). A peer is the verified
  signer of a message we received or the receiver of one we sent, so only participants we really
  exchanged messages with are asked, and a flood of traffic from one peer cannot push the others
  out of a window of distinct ids. A peer takes part if its registry record is SUBSCRIBED and
  publishes a `log_vkey`; others (not running a Lakou log) are skipped quietly.
* **Where.** The witness endpoint is `<base>/tlog/witness/add-checkpoint`, where `<base>` is the
  peer's registered subscriber URL without a final `/beckn` path segment: a Lakou node registers
  `<public URL>/beckn` and serves /tlog/* at its public URL's root (beckn/node.py). A subscriber
  URL with any other path is used as the base as it is.
* **What.** ``old <size the peer last cosigned for us>``, the RFC 9162 consistency proof from
  there, and the checkpoint. The size is remembered per peer (loaded at first contact from the
  cosignatures we stored, `tlog_cosignature`, then kept in memory). On the witness's 409 ("I hold
  size N") the request is resent once from N, as tlog-witness says; a witness claiming a size
  beyond our checkpoint is logged as such (we never signed it, or it is confused).
* **Keep.** Only cosignature lines that verify under the cosigner key derived from the peer's
  registry `log_vkey` (witness.cosigner_vkey_for) are stored; /tlog/checkpoint serves them. A
  witness answering with anything else (a forged or foreign line) has its answer dropped.

Failures (peer down, timeouts, 4xx/5xx, bad answers) are logged with the peer's id and the HTTP
status, never a message, and retried at the next round; peers are asked concurrently, at most
`concurrency` at a time, each exchange bounded by `timeout`. Nothing here blocks a checkpoint or a
delivery: this runs in its own task, reading what the checkpointer already stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import httpx
import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from beckn.tlog.note import NoteError, NoteVerifier, parse_checkpoint, parse_note, verify_cosignature
from beckn.tlog.tables import TlogEntry
from beckn.tlog.witness import (
    ADD_CHECKPOINT,
    Cosignatures,
    RegistryLogKeys,
    TlogCosignature,
    WitnessConflict,
    WitnessRefused,
    WitnessUnavailable,
    cosigner_vkey_for,
    request_cosignature,
)

if TYPE_CHECKING:
    from beckn.tlog.store import TransactionLog

log = structlog.get_logger(__name__)

__all__ = ["Cosigning", "PeerWitness", "RoundReport", "witness_base_url"]

BECKN_PATH = "/beckn"
# A failing peer is asked again after 1, 2, 4, ... rounds, at most this many (about a minute at
# the default 2 s checkpoint interval).
MAX_SKIP = 32


def witness_base_url(subscriber_url: str) -> str:
    """Where a peer's /tlog/* routes live, from its registered subscriber URL (module docstring)."""
    parts = urlsplit(subscriber_url.strip())
    path = parts.path.rstrip("/")
    if path.endswith(BECKN_PATH):
        path = path[: -len(BECKN_PATH)]
    return urlunsplit((parts.scheme, parts.netloc, path, "", "")).rstrip("/")


@dataclass(frozen=True)
class PeerWitness:
    """A peer able to witness: its add-checkpoint URL and the cosigner keys its log keys give."""

    subscriber_id: str
    url: str
    cosigners: tuple[NoteVerifier, ...]

    @property
    def names(self) -> list[str]:
        return sorted({v.name for v in self.cosigners})


@dataclass
class RoundReport:
    """What one round did (for tests and the health page): peer id -> outcome."""

    size: int | None = None
    cosigned: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)  # failed lately: asked again in a few rounds


class _Failure(Exception):
    """One peer's exchange failed; the message is safe to log (ids, sizes, HTTP statuses)."""


class Cosigning:
    """Asks recent peers to cosign the latest checkpoint, round after round (module docstring)."""

    def __init__(
        self,
        tlog: TransactionLog,
        sessions: async_sessionmaker[AsyncSession],
        log_keys: RegistryLogKeys,
        self_id: str,
        *,
        interval: float,
        http: httpx.AsyncClient | None = None,
        max_peers: int = 8,
        recent_entries: int = 10_000,
        timeout: float = 5.0,
        concurrency: int = 4,
    ) -> None:
        if interval <= 0 or timeout <= 0 or concurrency < 1 or max_peers < 0 or recent_entries < 1:
            raise ValueError("cosigning needs interval > 0, timeout > 0, concurrency >= 1, max_peers >= 0, "
                             "recent_entries >= 1")
        self.log = tlog
        self._sessions = sessions
        self._log_keys = log_keys
        self.self_id = self_id
        self.interval = interval
        self._http = http
        self.max_peers = max_peers
        self.recent_entries = recent_entries
        self.timeout = timeout
        self._limit = asyncio.Semaphore(concurrency)
        self.cosignatures = Cosignatures(sessions)
        # peer -> the size it last cosigned for us (loaded from tlog_cosignature at first contact).
        self._cosigned: dict[str, int] = {}
        self._done_for: tuple[int, frozenset[str]] | None = None  # the last round that left nothing to do
        # peer -> (consecutive failures, first round it is asked again): a dead peer is not called
        # (nor warned about) every couple of seconds, yet is back within MAX_SKIP rounds.
        self._backoff: dict[str, tuple[int, int]] = {}
        # The recent peers' last outcome: "cosigned", "skipped" or why it failed (health, tests).
        self.peer_status: dict[str, str] = {}
        self.last_round: RoundReport | None = None
        self.rounds = 0

    # ------------------------------------------------------------------ the loop

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                self.last_round = await self.round()
            except Exception as exc:  # noqa: BLE001 - a database or registry outage must not end the loop
                log.error("tlog.cosigning_round_failed", error_type=type(exc).__name__, error=str(exc)[:300])
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                pass

    async def round(self) -> RoundReport:
        """Submit the latest checkpoint to every recent peer that has not cosigned it yet."""
        self.rounds += 1
        report = RoundReport()
        note = await self.log.latest_checkpoint()
        if note is None or self.max_peers == 0:
            return report
        text, _ = parse_note(note)
        size = parse_checkpoint(text).size
        report.size = size
        peers = await self.recent_peers(size)
        if self._done_for == (size, frozenset(peers)):
            return report  # everyone already cosigned this checkpoint (or has no log to cosign with)
        now = self.rounds
        asked = [p for p in peers if self._backoff.get(p, (0, 0))[1] <= now]
        report.deferred = [p for p in peers if p not in asked]
        outcomes = dict(zip(asked, await asyncio.gather(*(self._one(p, note, size) for p in asked)), strict=True))
        for peer, outcome in outcomes.items():
            if outcome in ("cosigned", "current", "skipped"):
                (report.cosigned if outcome == "cosigned" else report.skipped).append(peer)
                self._backoff.pop(peer, None)
            else:
                report.failed[peer] = outcome
                failures = self._backoff.get(peer, (0, 0))[0] + 1
                self._backoff[peer] = (failures, now + min(2 ** (failures - 1), MAX_SKIP))
        outcomes = {p: "cosigned" if o == "current" else o for p, o in outcomes.items()}
        self.peer_status = {p: outcomes.get(p, self.peer_status.get(p, "deferred")) for p in peers}
        self._backoff = {p: v for p, v in self._backoff.items() if p in self.peer_status}
        if len(self._cosigned) > 10_000:  # a cache of what tlog_cosignature holds: reloaded on demand
            self._cosigned.clear()
        self._done_for = None if report.failed or report.deferred else (size, frozenset(peers))
        return report

    async def recent_peers(self, size: int) -> list[str]:
        """The distinct peers of the last `recent_entries` entries below `size`, newest first."""
        latest = func.max(TlogEntry.idx).label("latest")
        query = (select(TlogEntry.peer, latest)
                 .where(TlogEntry.idx >= max(0, size - self.recent_entries), TlogEntry.idx < size,
                        TlogEntry.peer.is_not(None), TlogEntry.peer != self.self_id)
                 .group_by(TlogEntry.peer).order_by(latest.desc()).limit(self.max_peers))
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        return [peer for peer, _ in rows if peer]

    # ------------------------------------------------------------------ one peer

    async def _one(self, peer: str, note: str, size: int) -> str:
        """'cosigned', 'current' (cosigned it before), 'skipped' (not a witness), or why it failed."""
        try:
            witness = await self.witness_for(peer)
            if witness is None:
                return "skipped"
            old = await self._last_cosigned(witness)
            if old == size:
                return "current"  # it already cosigned this checkpoint
            async with self._limit:
                lines = await self._submit(witness, note, size, old)
            stored = await self.cosignatures.add(note, lines)
            if stored == 0:
                raise _Failure("no cosignature line to store")
            self._cosigned[peer] = size
            log.debug("tlog.cosigned", peer=peer, size=size, old=old)
            return "cosigned"
        except _Failure as exc:
            log.warning("tlog.cosigning_failed", peer=peer, size=size, reason=str(exc))
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - one peer must not fail the round for the others
            log.error("tlog.cosigning_error", peer=peer, size=size, error_type=type(exc).__name__,
                      error=str(exc)[:300])
            return f"{type(exc).__name__}"

    async def _submit(self, witness: PeerWitness, note: str, size: int, old: int) -> list[str]:
        try:
            return await self._request(witness, note, size, old)
        except WitnessConflict as conflict:
            known = conflict.size
        # The witness holds another size for us: tlog-witness says resend once from it.
        if known > size:
            raise _Failure(f"witness says it cosigned size {known}, beyond our checkpoint {size}")
        self._cosigned[witness.subscriber_id] = known
        try:
            return await self._request(witness, note, size, known)
        except WitnessConflict as again:
            raise _Failure(f"witness answered 409 twice (sizes {known} then {again.size})") from None

    async def _request(self, witness: PeerWitness, note: str, size: int, old: int) -> list[str]:
        proof = await self.log.consistency_proof(old, size) if 0 < old < size else []
        try:
            async with asyncio.timeout(self.timeout):
                answer = await request_cosignature(witness.url, note, old, proof, http=self._http,
                                                   timeout=self.timeout)
        except TimeoutError:
            raise _Failure(f"no answer within {self.timeout} s") from None
        except WitnessRefused as exc:
            raise _Failure(f"witness refused: HTTP {exc.status}") from None
        except WitnessUnavailable as exc:
            raise _Failure(f"witness unreachable: {str(exc).split(': ', 2)[-1][:120]}") from None
        lines = [line for line in answer.split("\n") if line]
        kept = [line for line in lines if _verifies(note, line, witness.cosigners)]
        if not kept:
            raise _Failure(f"none of the {len(lines)} cosignature line(s) verifies under the peer's registered key")
        return kept

    async def _last_cosigned(self, witness: PeerWitness) -> int:
        known = self._cosigned.get(witness.subscriber_id)
        if known is None:
            async with self._sessions() as session:
                found = await session.scalar(select(func.max(TlogCosignature.size))
                                             .where(TlogCosignature.witness.in_(witness.names)))
            known = self._cosigned[witness.subscriber_id] = int(found or 0)
        return known

    # ------------------------------------------------------------------ the registry

    async def witness_for(self, peer: str) -> PeerWitness | None:
        """The peer's witness from its registry records (cached by RegistryLogKeys, negative
        answers too): None if it publishes no log key or no http(s) subscriber URL."""
        if "/" in peer:  # not a subscriber id: it would name another subscriber's origin
            return None
        try:
            registered = await self._log_keys.registered(peer)
        except WitnessUnavailable:
            raise _Failure("registry unavailable") from None
        urls = [u for u in registered.urls if urlsplit(u).scheme in ("http", "https")]
        if not registered.keys or not urls:
            return None
        cosigners = tuple(NoteVerifier.from_vkey(cosigner_vkey_for(k.vkey)) for k in registered.keys)
        return PeerWitness(peer, witness_base_url(urls[0]) + ADD_CHECKPOINT, cosigners)


def _verifies(note: str, line: str, cosigners: Sequence[NoteVerifier]) -> bool:
    """Whether ``line`` is a valid cosignature of ``note``'s checkpoint by one of ``cosigners``."""
    try:
        text, _ = parse_note(note)
        _, (sig,) = parse_note("x\n\n" + line + "\n")  # the line alone, format-checked
    except (NoteError, ValueError):
        return False
    for verifier in cosigners:
        if (sig.name, sig.key_id) == (verifier.name, verifier.key_id):
            try:
                verify_cosignature(text + "\n" + sig.line() + "\n", verifier)
            except NoteError:
                return False
            return True
    return False
