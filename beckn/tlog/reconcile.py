"""Reconcile two (or more) nodes' transaction logs of one Beckn transaction (issue 8).

Each node logs what it sent (`out`, one entry per delivery attempt) and what it received (`in`,
with the ACK or NACK it gave). An auditor holding every party's export of the transaction checks,
trusting neither node, only the registry's signed key history:

1. **Each log on its own** (`verify_log`): the checkpoint is signed by the node's `log_vkey` from
   the registry; every exported entry's leaf hashes to what its inclusion proof proves into that
   checkpoint; the sidecar (salt + raw bytes) opens the leaf's commitments; the leaf agrees with
   the export's columns; the `prev` chain has no gap.
2. **Every signature** (`check_signatures`): the BECKN-006 `Authorization` (and the gateway's
   `X-Gateway-Authorization` when present) verifies over the raw body with the signer's key valid
   at the signature's `created` time, as the registry's key history says.
3. **The match** (`match_logs`): every message one node delivered (an ACKed attempt) to another
   node whose log is given appears there as received (`in`, ACK) with the same message id, action
   and body SHA-256, and every message a node received (ACK) from a node whose log is given
   appears in that node's log as sent. A receipt the sender holds (`X-Lakou-Log-Receipt`, the
   receiver's signed promise) must name an entry of the receiver's export (index and leaf hash).
   Traffic with nodes whose logs are not given is reported as out of scope, not flagged.

Everything here is a pure function over data already fetched (exports as the auditor API serves
them, and a `KeyHistory` the caller backs with signed registry answers): no I/O, so it can be
tested and run on saved files. `lakou audit reconcile` (beckn/cli/audit.py) is the glue.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from nacl.signing import VerifyKey

from beckn.signing import SignatureError, body_digest, parse_signature_header, verify_signature
from beckn.tlog import merkle
from beckn.tlog.leaf import SidecarMismatch, check_sidecar, commit
from beckn.tlog.note import ED25519, Checkpoint, NoteError, NoteVerifier, open_checkpoint
from beckn.tlog.receipt import Receipt, ReceiptError, verify_receipt

__all__ = [
    "ExportError",
    "Finding",
    "KeyAt",
    "KeyHistory",
    "LoggedMessage",
    "NodeLog",
    "Report",
    "check_signatures",
    "export_subscriber",
    "log_owner",
    "match_logs",
    "moments",
    "reconcile",
    "signature_key_ids",
    "verify_log",
]

# Where a sender's sidecar keeps the receiver's receipt and the attempt number (beckn/outbox.py).
RECEIPT_METADATA = "x-lakou-log-receipt"
ATTEMPT_METADATA = "x-lakou-attempt"
AUTHORIZATION = "authorization"
GATEWAY_AUTHORIZATION = "x-gateway-authorization"
# Actions a node may send through a gateway rather than to the peer its context names (a BPP's
# on_search relayed by the gateway, a BAP's search broadcast): without a receipt naming the
# receiver, their receiver is unknown, never guessed from the context.
GATEWAY_ROUTED = frozenset({"search", "on_search"})
# Words for the registry's participant types, in the findings people read.
ROLE_NAMES = {"BAP": "BAP", "BPP": "BPP", "BG": "gateway", "BREG": "registry"}

Kind = Literal[
    "checkpoint", "integrity", "pending", "erased", "signature", "key", "receipt",
    "left_out", "body_mismatch", "matched", "out_of_scope", "not_delivered",
]


@dataclass(frozen=True, slots=True)
class Finding:
    """One result. `flag` findings are evidence that the logs do not reconcile (exit code 1)."""

    kind: Kind
    flag: bool
    message: str
    node: str | None = None  # the node the finding is about (whose log left a message out, ...)
    action: str | None = None
    message_id: str | None = None
    sender: str | None = None
    receiver: str | None = None
    body_sha256: str | None = None
    entries: tuple[tuple[str, int], ...] = ()  # (node, leaf index) of the entries involved
    promised_index: int | None = None  # a receipt's index in the receiver's log

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "flag": self.flag, "message": self.message}
        for name in ("node", "action", "message_id", "sender", "receiver", "body_sha256", "promised_index"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.entries:
            out["entries"] = [{"node": n, "index": i} for n, i in self.entries]
        return out


@dataclass(frozen=True, slots=True)
class LoggedMessage:
    """One exported entry that passed its own log's checks (section 1 of the module doc)."""

    node: str
    index: int
    leaf_hash: bytes
    direction: Literal["in", "out"]
    action: str
    message_id: str
    ack: str | None
    code: str | None
    peer: str | None
    seen: str | None
    body: bytes | None  # None when erased (GDPR): the entry is proven, its content cannot be
    headers: Mapping[str, str]
    proven: bool  # its inclusion proof verified against the node's verified checkpoint

    @property
    def body_sha256(self) -> str | None:
        return None if self.body is None else hashlib.sha256(self.body).hexdigest()

    @property
    def ref(self) -> tuple[str, int]:
        return (self.node, self.index)


@dataclass(slots=True)
class NodeLog:
    """A node's export after `verify_log`: its verified entries and the findings on its own log."""

    subscriber_id: str
    role: str | None
    checkpoint: Checkpoint | None
    entries: list[LoggedMessage] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def name(self) -> str:
        role = ROLE_NAMES.get(self.role or "")
        return f"the {role} {self.subscriber_id}" if role else self.subscriber_id


@dataclass(frozen=True, slots=True)
class KeyAt:
    """The registry's answer for one signing key at one moment (from a signed history lookup).

    `verify_key` None means no key of that id was valid then; `reason` says why in words."""

    verify_key: VerifyKey | None
    reason: str | None = None


class KeyHistory(Protocol):
    """What reconcile needs from the registry. The caller checks the registry's signature on
    every answer (beckn/cli/audit.py does) before it gets here."""

    def signing_key(self, subscriber_id: str, unique_key_id: str, at: datetime) -> KeyAt: ...

    def log_vkeys(self, subscriber_id: str, at: Sequence[datetime] = ()) -> list[str]:
        """The subscriber's published log vkeys: on its keys valid now, and on those valid at the
        moments `at` (after a rotation, the current key may not carry the log key that signed)."""
        ...

    def role(self, subscriber_id: str) -> str | None: ...


@dataclass(slots=True)
class Report:
    nodes: list[NodeLog]
    findings: list[Finding]

    @property
    def flags(self) -> list[Finding]:
        return [f for f in self.findings if f.flag]

    @property
    def reconciled(self) -> bool:
        return not self.flags


# ---------------------------------------------------------------- one node's log


class ExportError(ValueError):
    """An export is not the JSON the auditor API serves (nothing can be concluded from it)."""


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise ExportError(f"{what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ExportError(f"{what} is not valid base64") from None


def _entries(export: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    entries = export.get("entries")
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise ExportError("the export has no list of entry objects")
    return entries


def _leaf(entry: Mapping[str, Any]) -> dict[str, Any]:
    try:
        fields = json.loads(_b64(entry.get("leaf"), "leaf"))
    except ValueError:  # ExportError too: verify_log reports the entry
        return {}
    return fields if isinstance(fields, dict) else {}


def log_owner(origin: str) -> str:
    """The subscriber a log origin belongs to: `<subscriber_id>` or `<subscriber_id>/<anything>`
    (the rule witnesses apply, beckn/tlog/witness.py)."""
    return origin.split("/", 1)[0]


def export_subscriber(export: Mapping[str, Any]) -> str | None:
    """Whose log an export claims to be: its leaves' `node`, else its checkpoint's origin owner.
    A claim only: `verify_log` accepts it once the registry's log key for it verifies the
    checkpoint."""
    for entry in _entries(export):
        node = _leaf(entry).get("node")
        if isinstance(node, str) and not node.startswith("sha256:"):
            return node
    note = export.get("checkpoint")
    if isinstance(note, str) and "\n" in note:
        return log_owner(note.split("\n", 1)[0])
    return None


def moments(times: Iterable[datetime], most: int = 8) -> list[datetime]:
    """A few of `times` to look keys up at: all if few, else the first, the last and some between."""
    distinct = sorted({t.replace(microsecond=0) for t in times})
    if len(distinct) <= most:
        return distinct
    step = (len(distinct) - 1) / (most - 1)
    return [distinct[round(i * step)] for i in range(most)]


def signature_key_ids(export: Mapping[str, Any]) -> list[tuple[str, str, datetime]]:
    """(subscriber_id, unique_key_id, created) of every signature header in an export, for a
    caller that wants to prefetch key history."""
    out = []
    for entry in _entries(export):
        headers = entry.get("headers")
        if not isinstance(headers, Mapping):
            continue
        for name in (AUTHORIZATION, GATEWAY_AUTHORIZATION):
            value = headers.get(name)
            if isinstance(value, str):
                try:
                    params = parse_signature_header(value)
                except SignatureError:
                    continue
                out.append((params.subscriber_id, params.unique_key_id, datetime.fromtimestamp(params.created, UTC)))
    return out


def _opens(in_leaf: Any, plain: str, salt: bytes | None) -> bool:
    if in_leaf == plain:
        return True
    return salt is not None and isinstance(in_leaf, str) and in_leaf == commit(salt, plain.encode("utf-8"))


def _plain(value: Any) -> str | None:
    return value if isinstance(value, str) and not value.startswith("sha256:") else None


def verify_log(
    export: Mapping[str, Any], txn: str, subscriber_id: str, log_vkeys: Sequence[str], role: str | None = None
) -> NodeLog:
    """Check one node's export of transaction `txn` against the log keys the registry publishes
    for `subscriber_id`. Raises ExportError if the export is not an export at all."""
    log = NodeLog(subscriber_id, role, None)
    who = log.name

    def flag(kind: Kind, message: str, index: int | None = None) -> None:
        refs = ((subscriber_id, index),) if index is not None else ()
        log.findings.append(Finding(kind, True, message, node=subscriber_id, entries=refs))

    note = export.get("checkpoint")
    verifiers = []
    for vkey in log_vkeys:
        try:
            verifier = NoteVerifier.from_vkey(vkey)
        except NoteError:
            continue
        if verifier.sig_type == ED25519 and log_owner(verifier.name) == subscriber_id:
            verifiers.append(verifier)
    if not verifiers:
        flag("checkpoint", f"the registry publishes no log key for {who}: its log cannot be verified")
    elif isinstance(note, str):
        errors = []
        for verifier in verifiers:
            try:
                log.checkpoint, _, _ = open_checkpoint(note, verifier)
                break
            except NoteError as exc:
                errors.append(str(exc))
        if log.checkpoint is None:
            flag("checkpoint", f"{who}'s checkpoint is not signed by its registered log key: {errors[0]}")

    cp = log.checkpoint
    prev: bytes | None = None
    for n, e in enumerate(_entries(export)):
        index = e.get("leaf_index")
        if not isinstance(index, int) or isinstance(index, bool):
            raise ExportError(f"entry {n} has no integer leaf_index")
        leaf = _b64(e.get("leaf"), f"entry {index} leaf")
        lh = merkle.leaf_hash(leaf)
        fields = _leaf(e)
        problems: list[str] = []
        erased = bool(e.get("erased"))
        salt = None if erased or e.get("salt") is None else _b64(e["salt"], f"entry {index} salt")
        body = None if erased or e.get("body") is None else _b64(e["body"], f"entry {index} body")
        headers = e.get("headers") if not erased else None
        message_id = e.get("message_id")
        if not fields:
            problems.append("the leaf is not a JSON object")
        if e.get("leaf_hash") is not None and _b64(e["leaf_hash"], f"entry {index} leaf_hash") != lh:
            problems.append("the exported leaf hash is not the hash of the leaf")
        if not _opens(fields.get("txn"), txn, salt):
            problems.append("the leaf is not of this transaction")
        if not isinstance(message_id, str) or not _opens(fields.get("msg"), message_id, salt):
            problems.append("the leaf's message id differs from the export's")
        if fields.get("dir") not in ("in", "out") or fields.get("dir") != e.get("direction"):
            problems.append("the leaf's direction differs from the export's")
        if not _opens(fields.get("node"), subscriber_id, salt):
            problems.append(f"the leaf is not {subscriber_id}'s")
        if fields.get("prev") != (prev.hex() if prev is not None else None):
            # Each entry names the node's previous entry of the transaction: a gap means the export
            # (or the log) left an entry out. The entry itself may be sound, so it stays in the match.
            flag("integrity", f"{who}, entry {index}: the prev chain is broken: the entry before it in this "
                 "transaction is missing from the export", index)
        prev = lh
        if not erased:
            try:
                if salt is None or body is None or not isinstance(headers, Mapping):
                    raise SidecarMismatch("the sidecar lacks its body, headers or salt")
                check_sidecar(leaf, body=body, headers=headers, salt=salt)
            except (SidecarMismatch, ValueError) as exc:
                problems.append(f"the sidecar does not open the leaf: {exc}")
        proven = False
        proof = e.get("proof")
        if cp is not None and proof is not None:
            try:
                if not isinstance(proof, list):
                    raise merkle.ProofError("the proof is not a list")
                hashes = [_b64(h, f"entry {index} proof") for h in proof]
                merkle.verify_inclusion(lh, index, cp.size, hashes, cp.root_hash)
                proven = True
            except (merkle.ProofError, ExportError) as exc:
                problems.append(f"its inclusion proof does not verify against the checkpoint: {exc}")
        for problem in problems:
            flag("integrity", f"{who}, entry {index}: {problem}", index)
        if problems:
            continue
        if not proven:
            flag("pending", f"{who}, entry {index}: not in {who}'s signed checkpoint"
                 + (" yet (run again after the next checkpoint)" if cp is not None else ""), index)
        action = _plain(fields.get("action")) or str(e.get("action") or "")
        if erased:
            log.findings.append(Finding("erased", False, f"{who}, entry {index} ({action}): erased (GDPR); "
                                        "proven in the log, its body cannot be compared", node=subscriber_id,
                                        action=action, entries=((subscriber_id, index),)))
        log.entries.append(LoggedMessage(
            node=subscriber_id, index=index, leaf_hash=lh, direction=fields["dir"], action=action,
            message_id=str(message_id), ack=fields.get("ack"), code=fields.get("code"),
            peer=_plain(fields.get("peer")), seen=fields.get("seen"), body=body,
            headers=dict(headers) if isinstance(headers, Mapping) else {}, proven=proven,
        ))
    return log


# ---------------------------------------------------------------- signatures


def check_signatures(logs: Sequence[NodeLog], keys: KeyHistory) -> list[Finding]:
    """Every signature of every sent message and of every accepted (ACK) received one, against
    the signer's key valid at the signature's `created` (registry key history). NACKed messages
    are skipped: the receiver refused them, often for that very signature."""
    findings: list[Finding] = []
    for log in logs:
        for m in log.entries:
            if m.body is None or (m.direction == "in" and m.ack != "ACK"):
                continue
            signers = []
            for name in (AUTHORIZATION, GATEWAY_AUTHORIZATION):
                value = m.headers.get(name)
                if value is None:
                    if name == AUTHORIZATION:
                        signers.append(None)
                        findings.append(_sig_flag(log, m, "it carries no Authorization signature"))
                    continue
                kind, problem, signer = _check_one(value, m.body, keys)
                signers.append(signer)
                if problem:
                    findings.append(_sig_flag(log, m, f"its {_header_name(name)} {problem}", kind))
            if m.direction == "out" and log.subscriber_id not in signers:
                # A node signs what it sends (a gateway with X-Gateway-Authorization): a sent entry
                # no signature of the node covers was not sent by it, whatever its log says.
                findings.append(_sig_flag(log, m, "it is logged as sent, but no signature on it is "
                                                  f"{log.subscriber_id}'s"))
    return findings


def _header_name(name: str) -> str:
    return "Authorization" if name == AUTHORIZATION else "X-Gateway-Authorization"


def _sig_flag(log: NodeLog, m: LoggedMessage, problem: str, kind: Kind = "signature") -> Finding:
    what = "sent" if m.direction == "out" else "received"
    return Finding(kind, True, f"{m.action} {m.message_id} {what} by {log.name} (entry {m.index}): {problem}",
                   node=log.subscriber_id, action=m.action, message_id=m.message_id,
                   body_sha256=m.body_sha256, entries=(m.ref,))


def _check_one(header: str, body: bytes, keys: KeyHistory) -> tuple[Kind, str | None, str | None]:
    """(kind, problem or None, signer's subscriber id or None) for one signature header: "key" when
    the registry's history shows no such key valid at `created`, "signature" for the rest."""
    try:
        params = parse_signature_header(header)
    except SignatureError as exc:
        return "signature", f"is malformed: {exc.reason}", None
    created = datetime.fromtimestamp(params.created, UTC)
    key = keys.signing_key(params.subscriber_id, params.unique_key_id, created)
    if key.verify_key is None:
        return ("key", f"was made with {params.key_id}, which the registry's key history does not show valid at "
                f"its created time {created.isoformat()}" + (f" ({key.reason})" if key.reason else ""),
                params.subscriber_id)
    try:
        verify_signature(params, key.verify_key, digest_b64=body_digest(body))
    except SignatureError as exc:
        return "signature", f"does not verify: {exc.reason}", params.subscriber_id
    return "signature", None, params.subscriber_id


# ---------------------------------------------------------------- matching


def _signer(header: str | None) -> str | None:
    if header is None:
        return None
    try:
        return parse_signature_header(header).subscriber_id
    except SignatureError:
        return None


def _deliverer(m: LoggedMessage) -> str | None:
    """Who sent a received message over HTTP: the gateway that countersigned it, else its signer."""
    return _signer(m.headers.get(GATEWAY_AUTHORIZATION)) or _signer(m.headers.get(AUTHORIZATION)) or m.peer


@dataclass(slots=True)
class _Receipt:
    entry: LoggedMessage
    owner: str
    receipt: Receipt | None  # None: did not verify (`problem` says why)
    problem: str | None


def _receipts(logs: Sequence[NodeLog], keys: KeyHistory) -> tuple[list[_Receipt], list[Finding]]:
    out: list[_Receipt] = []
    findings: list[Finding] = []
    for log in logs:
        for m in log.entries:
            value = m.headers.get(RECEIPT_METADATA)
            if m.direction != "out" or not isinstance(value, str):
                continue
            receipt, owner, problem = None, None, None
            when: list[datetime] = []
            try:
                # What it claims (origin, time) only says which keys to try; the signature decides.
                lines = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode().split("\n")
                owner = log_owner(lines[1])
                when = [datetime.fromtimestamp(int(lines[5]), UTC)]
            except (binascii.Error, ValueError, IndexError, OverflowError, OSError):
                problem = problem if owner is not None else "is not a receipt"
            if owner is not None:
                vkeys = [v for v in keys.log_vkeys(owner, when) if log_owner(v.split("+", 1)[0]) == owner]
                errors = []
                for vkey in vkeys:
                    try:
                        receipt = verify_receipt(value, vkey, body=m.body)
                        break
                    except ReceiptError as exc:
                        errors.append(str(exc))
                if receipt is None:
                    problem = errors[0] if errors else f"names {owner}, which publishes no log key"
            if problem is not None:
                findings.append(Finding(
                    "receipt", True, f"{m.action} {m.message_id} sent by {log.name} (entry {m.index}): the "
                    f"receipt it keeps {problem}", node=log.subscriber_id, action=m.action,
                    message_id=m.message_id, receiver=owner, entries=(m.ref,)))
            out.append(_Receipt(m, owner or "", receipt, problem))
    return out, findings


def match_logs(logs: Sequence[NodeLog], keys: KeyHistory) -> list[Finding]:
    """Match sent against received messages between the given logs (module doc, section 3)."""
    by_node = {log.subscriber_id: log for log in logs}
    receipts, findings = _receipts(logs, keys)
    valid = [r for r in receipts if r.receipt is not None]

    # The receiver's ACKed copies of each message, by (receiver, deliverer, message id, action).
    received: dict[tuple[str, str | None, str, str], list[LoggedMessage]] = {}
    for log in logs:
        for m in log.entries:
            if m.direction == "in" and m.ack == "ACK" and m.body is not None:
                received.setdefault((log.subscriber_id, _deliverer(m), m.message_id, m.action), []).append(m)
    consumed: set[tuple[str, int]] = set()

    # 1. Every message sent (its attempts grouped by body: retries are byte-identical).
    for log in logs:
        groups: dict[tuple[str, str, str], list[LoggedMessage]] = {}
        for m in log.entries:
            if m.direction == "out" and m.body is not None:
                groups.setdefault((m.message_id, m.action, m.body_sha256 or ""), []).append(m)
        for (message_id, action, digest), attempts in groups.items():
            # One body sent to several receivers (a gateway's search broadcast): one message per
            # receiver, known from its receipt; attempts without a receipt go with the only
            # receiver there is, or on their own when there are several.
            owner_of = {id(r.entry): r.owner for r in valid if any(r.entry is m for m in attempts)}
            owners = list(dict.fromkeys(owner_of.values()))
            if len(owners) <= 1:
                batches = [attempts]
            else:
                batches = [[m for m in attempts if owner_of.get(id(m)) == o] for o in owners]
                batches += [rest] if (rest := [m for m in attempts if id(m) not in owner_of]) else []
            for batch in batches:
                findings.append(_match_sent(log, message_id, action, digest, batch, by_node, received,
                                            valid, consumed))

    # 2. Every message received (ACK) that step 1 did not account for.
    for key, copies in received.items():
        receiver, deliverer, message_id, action = key
        for digest in dict.fromkeys(m.body_sha256 for m in copies):
            same = [m for m in copies if m.body_sha256 == digest and m.ref not in consumed]
            if not same:
                continue
            refs = tuple(m.ref for m in same)
            rlog = by_node[receiver]
            what = (f"{action} {message_id} received and ACKed by {rlog.name} "
                    f"(entries {', '.join(str(i) for _, i in refs)})")
            if deliverer not in by_node:
                findings.append(Finding("out_of_scope", False, f"{what} from {deliverer or 'an unknown sender'}, "
                                        "whose log is not given", node=receiver, action=action,
                                        message_id=message_id, sender=deliverer, receiver=receiver,
                                        body_sha256=digest, entries=refs))
                continue
            slog = by_node[deliverer]
            sent = [m for m in slog.entries if m.direction == "out" and m.message_id == message_id
                    and m.action == action]
            if any(m.body_sha256 == digest for m in sent):
                # Sent with this body, though not (by its receipts) to this receiver: it got here too.
                findings.append(Finding("matched", False, f"{what}: sent by {slog.name} with the same body",
                                        node=receiver, action=action, message_id=message_id, sender=deliverer,
                                        receiver=receiver, body_sha256=digest,
                                        entries=tuple(m.ref for m in sent if m.body_sha256 == digest) + refs))
                continue
            if _erased(slog, "out", message_id, action):
                findings.append(Finding("erased", False, f"{what} from {slog.name}, whose copy is erased (GDPR): "
                                        "the bodies cannot be compared", node=deliverer, action=action,
                                        message_id=message_id, sender=deliverer, receiver=receiver,
                                        body_sha256=digest, entries=refs))
                continue
            if sent:
                findings.append(Finding(
                    "body_mismatch", True, f"{what} from {slog.name}: {slog.name}'s log has it sent with another "
                    f"body (SHA-256 {sent[0].body_sha256}, received {digest})", node=deliverer, action=action,
                    message_id=message_id, sender=deliverer, receiver=receiver, body_sha256=digest,
                    entries=refs + tuple(m.ref for m in sent)))
                continue
            findings.append(Finding(
                "left_out", True, f"left out by {slog.name}: {what} from {slog.name}, but {slog.name}'s log "
                "has no such message sent", node=deliverer, action=action,
                message_id=message_id, sender=deliverer, receiver=receiver, body_sha256=digest, entries=refs))
    return findings


def _match_sent(
    log: NodeLog, message_id: str, action: str, digest: str, attempts: list[LoggedMessage],
    by_node: Mapping[str, NodeLog], received: Mapping[tuple[str, str | None, str, str], list[LoggedMessage]],
    receipts: Sequence[_Receipt], consumed: set[tuple[str, int]],
) -> Finding:
    sender = log.subscriber_id
    refs = tuple(m.ref for m in attempts)
    mine = [r for r in receipts if any(r.entry is m for m in attempts)]
    delivered = any(m.ack == "ACK" for m in attempts)
    owners = list(dict.fromkeys(r.owner for r in mine))
    receiver = owners[0] if owners else None
    if receiver is None and action not in GATEWAY_ROUTED:
        receiver = next((m.peer for m in attempts if m.peer), None)
    what = f"{action} {message_id} sent by {log.name} (entries {', '.join(str(i) for _, i in refs)})"

    def found(kind: Kind, flag: bool, message: str, node: str | None, more: Iterable[tuple[str, int]] = (),
              promised: int | None = None, to: str | None = None) -> Finding:
        return Finding(kind, flag, message, node=node, action=action, message_id=message_id, sender=sender,
                       receiver=to or receiver, body_sha256=digest, entries=refs + tuple(more),
                       promised_index=promised)

    if receiver is None:
        # No receipt and a gateway-routable action: whoever among the given logs has it, matches.
        for (to, frm, mid, act), copies in received.items():
            hits = [m for m in copies if frm == sender and mid == message_id and act == action
                    and m.body_sha256 == digest and m.ref not in consumed]
            if hits:
                consumed.update(m.ref for m in hits)
                return found("matched", False, f"{what}: received by {by_node[to].name}", to,
                             (m.ref for m in hits), to=to)
        return found("out_of_scope", False, f"{what} to a receiver it does not name (no receipt), not among "
                     "the logs given", None)
    if receiver not in by_node:
        return found("out_of_scope", False, f"{what} to {receiver}, whose log is not given", receiver)
    rlog = by_node[receiver]
    copies = [m for m in received.get((receiver, sender, message_id, action), []) if m.ref not in consumed]
    exact = [m for m in copies if m.body_sha256 == digest]
    # Each receipt is the receiver's signed promise: the entry it names must be in its export.
    promised = [r.receipt for r in mine if r.receipt is not None and r.owner == receiver]
    broken = []
    for receipt in promised:
        assert receipt is not None
        entry = next((m for m in rlog.entries if m.index == receipt.index), None)
        if entry is None or entry.leaf_hash != receipt.leaf_hash:
            broken.append(receipt)
    if exact and not broken:
        consumed.update(m.ref for m in exact)
        return found("matched", False, f"{what}: received by {rlog.name} with the same body", receiver,
                     (m.ref for m in exact))
    if exact:
        consumed.update(m.ref for m in exact)
        receipt = broken[0]
        there = "another entry" if any(m.index == receipt.index for m in rlog.entries) else "no entry"
        return found("receipt", True, f"{what}: {rlog.name} promised it at index {receipt.index} (signed "
                     f"receipt) but its export has {there} there", receiver, promised=receipt.index)
    if not delivered:
        return found("not_delivered", False, f"{what}: never acknowledged "
                     f"({', '.join(sorted({m.ack or m.code or '?' for m in attempts}))}), and {rlog.name} "
                     "did not accept it", receiver)
    if _erased(rlog, "in", message_id, action):
        return found("erased", False, f"{what}: {rlog.name}'s copy is erased (GDPR): the bodies cannot be "
                     "compared", receiver)
    if copies:
        consumed.update(m.ref for m in copies)
        return found("body_mismatch", True, f"{what}: {rlog.name} logged it received with another body "
                     f"(SHA-256 {copies[0].body_sha256}, sent {digest})", receiver, (m.ref for m in copies))
    promise = f"; {rlog.name} promised it at index {promised[0].index} (signed receipt)" if promised else ""
    return found("left_out", True, f"left out by {rlog.name}: {what}, ACKed, is not in {rlog.name}'s log"
                 f"{promise}", receiver, promised=promised[0].index if promised else None)


def _erased(log: NodeLog, direction: str, message_id: str, action: str) -> bool:
    return any(m.body is None and m.direction == direction and m.message_id == message_id and m.action == action
               for m in log.entries)


def reconcile(logs: Sequence[NodeLog], keys: KeyHistory) -> Report:
    """Everything: the findings of each log, its signatures, and the match between the logs."""
    findings = [f for log in logs for f in log.findings]
    findings += check_signatures(logs, keys)
    findings += match_logs(logs, keys)
    return Report(list(logs), findings)
