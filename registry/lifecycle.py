"""The operator's lifecycle decisions on participants: approve, suspend, revoke a key, revoke a
participant. One function per decision, shared by the admin API (registry/admin.py) and so by
`lakou registry approve|suspend|revoke`.

Entry states (registry/tables.py `ParticipantStatus`) and what the operator may do:

    INITIATED, UNDER_SUBSCRIPTION  --approve-->  SUBSCRIBED
    UNSUBSCRIBED (suspended)       --approve-->  SUBSCRIBED   (suspension is reversible)
    SUBSCRIBED, INITIATED,
    UNDER_SUBSCRIPTION, INVALID_SSL --suspend-->  UNSUBSCRIBED
    any                             --revoke participant-->  UNSUBSCRIBED, every key revoked

INVALID_SSL and EXPIRED are not approvable: the participant must prove its URL again
(/subscribe) or get a new key first. Approving also needs a key usable now, otherwise the entry
would be SUBSCRIBED yet invisible to every lookup. An entry already in the target state is left
alone (`changed` False), so scripts may repeat a decision; any other refused transition raises
`IllegalTransition` (HTTP 409) naming the current state and the allowed ones, and changes nothing.

Keys: revoking sets `revoked_at` (now) and nothing can clear it: there is no un-revoke, and
re-adding the same key id is refused by registry/participants.py and registry/subscribe.py. The
key row is kept forever so that signatures made before the revocation stay verifiable
(`valid_at` lookups).

Every change writes one `registry_audit` row per entry or key touched, in the same transaction:
who (the operator's declared name: the admin token is shared, so the name is a statement, not a
proof), when, what, from which state to which, and why.

Nodes see a decision when their cached lookup expires: at most LAKOU_LOOKUP_CACHE_SECONDS.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from beckn.errors import ErrorCode
from registry.errors import ApiError
from registry.participants import key_state
from registry.tables import ParticipantStatus, RegistryAudit, RegistryKey, RegistryParticipant
from registry.vocabulary import truncate_ms, wire_time

log = structlog.get_logger(__name__)

S = ParticipantStatus


class Action(StrEnum):
    APPROVE = "approve"
    SUSPEND = "suspend"
    REVOKE_KEY = "revoke_key"
    REVOKE_PARTICIPANT = "revoke_participant"


# For each entry decision: its target state and the states it may start from.
TRANSITIONS: dict[Action, tuple[ParticipantStatus, frozenset[ParticipantStatus]]] = {
    Action.APPROVE: (S.SUBSCRIBED, frozenset({S.INITIATED, S.UNDER_SUBSCRIPTION, S.UNSUBSCRIBED})),
    Action.SUSPEND: (S.UNSUBSCRIBED, frozenset({S.SUBSCRIBED, S.INITIATED, S.UNDER_SUBSCRIPTION, S.INVALID_SSL})),
}
# Why a state cannot be approved, so the refusal says what to do instead.
_NOT_APPROVABLE = {
    S.INVALID_SSL: "its callback URL failed the on_subscribe check: the participant must /subscribe again",
    S.EXPIRED: "its keys expired: add a new key first (lakou registry add, or /subscribe)",
}


class IllegalTransition(ApiError):
    """The decision does not apply to the current state (HTTP 409); nothing was changed."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(409, message, path=path, code=ErrorCode.POLICY_ERROR.value)


class NotFound(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(404, message)


@dataclass(frozen=True, slots=True)
class Decision:
    """Who decides and why, recorded with the change."""

    actor: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    action: Action
    subscriber_id: str
    changed: bool
    audit: list[RegistryAudit]


def _label(entry: RegistryParticipant) -> str:
    return f"{entry.subscriber_id} {entry.type} domain={entry.domain or '(any)'}"


async def _entries(session: AsyncSession, subscriber_id: str, type_: str | None,
                   domain: str | None) -> list[RegistryParticipant]:
    query = select(RegistryParticipant).where(RegistryParticipant.subscriber_id == subscriber_id)
    if type_ is not None:
        query = query.where(RegistryParticipant.type == type_)
    if domain is not None:
        query = query.where(RegistryParticipant.domain == domain)
    # FOR UPDATE on PostgreSQL (ignored by SQLite, whose writers are serialised anyway): two
    # operators deciding at once must not both read the same "from" state.
    query = query.order_by(RegistryParticipant.type, RegistryParticipant.domain).with_for_update()
    entries = list((await session.execute(query)).scalars().all())
    if not entries:
        narrowed = "".join(f" {k}={v!r}" for k, v in (("type", type_), ("domain", domain)) if v is not None)
        raise NotFound(f"the registry has no entry for subscriber_id {subscriber_id!r}{narrowed}; "
                       "list them with GET /admin/participants (lakou registry list)")
    return entries


async def _keys(session: AsyncSession, subscriber_id: str) -> list[RegistryKey]:
    query = (select(RegistryKey).where(RegistryKey.subscriber_id == subscriber_id)
             .order_by(RegistryKey.valid_from, RegistryKey.id).with_for_update())
    return list((await session.execute(query)).scalars().all())


def _usable(key: RegistryKey, now: datetime) -> bool:
    return key.revoked_at is None and key.valid_from <= now < key.valid_until


def _record(session: AsyncSession, decision: Decision, action: Action, now: datetime, subscriber_id: str, *,
            entry: RegistryParticipant | None = None, key: RegistryKey | None = None,
            from_state: str | None = None, to_state: str | None = None) -> RegistryAudit:
    row = RegistryAudit(at=now, actor=decision.actor, action=action.value, subscriber_id=subscriber_id,
                        type=entry.type if entry else None, domain=entry.domain if entry else None,
                        unique_key_id=key.unique_key_id if key else None,
                        from_state=from_state, to_state=to_state, reason=decision.reason)
    session.add(row)
    return row


async def change_status(
    sessions: async_sessionmaker[AsyncSession], action: Action, subscriber_id: str, decision: Decision, *,
    type_: str | None = None, domain: str | None = None, now: datetime | None = None,
) -> Outcome:
    """Approve or suspend every entry of `subscriber_id` (narrowed by `type_`/`domain`), all or
    nothing: one entry in a state the decision does not apply to refuses the whole request."""
    target, sources = TRANSITIONS[action]
    now = truncate_ms(now or datetime.now(UTC))
    async with sessions() as session, session.begin():
        entries = await _entries(session, subscriber_id, type_, domain)
        todo = [e for e in entries if e.status != target.value]
        for entry in todo:
            current = S(entry.status)
            if current not in sources:
                allowed = ", ".join(sorted(s.value for s in sources))
                why = f" ({_NOT_APPROVABLE[current]})" if action is Action.APPROVE and current in _NOT_APPROVABLE else ""
                raise IllegalTransition(
                    f"cannot {action.value} {_label(entry)}: it is {current.value}{why}; {action.value} applies to "
                    f"entries that are {allowed}", "status")
        if action is Action.APPROVE and todo and not any(_usable(k, now) for k in await _keys(session, subscriber_id)):
            raise IllegalTransition(
                f"cannot approve {subscriber_id!r}: it has no key valid now (all revoked, expired or not yet "
                "valid), so no lookup could show it; add a new key first (lakou registry add, or /subscribe)",
                "keys")
        audit = []
        for entry in todo:
            audit.append(_record(session, decision, action, now, subscriber_id, entry=entry,
                                 from_state=entry.status, to_state=target.value))
            entry.status, entry.updated = target.value, now
    _log(action, subscriber_id, audit)
    return Outcome(action, subscriber_id, bool(audit), audit)


async def revoke_key(
    sessions: async_sessionmaker[AsyncSession], subscriber_id: str, unique_key_id: str, decision: Decision, *,
    now: datetime | None = None,
) -> Outcome:
    """Revoke one key, for ever. Revoking a revoked key is refused (409): the first revocation's
    time is what auditors rely on and is never moved."""
    now = truncate_ms(now or datetime.now(UTC))
    async with sessions() as session, session.begin():
        key = (await session.execute(
            select(RegistryKey).where(RegistryKey.subscriber_id == subscriber_id,
                                      RegistryKey.unique_key_id == unique_key_id).with_for_update()
        )).scalar_one_or_none()
        if key is None:
            raise NotFound(f"the registry has no key {unique_key_id!r} for subscriber_id {subscriber_id!r}; "
                           "list the keys with GET /admin/participants (lakou registry list)")
        if key.revoked_at is not None:
            raise IllegalTransition(
                f"key {subscriber_id}|{unique_key_id} is already revoked (since {wire_time(key.revoked_at)}); "
                "a revocation is final and its time is never changed", "unique_key_id")
        audit = [_revoke(session, key, decision, Action.REVOKE_KEY, now)]
    _log(Action.REVOKE_KEY, subscriber_id, audit)
    return Outcome(Action.REVOKE_KEY, subscriber_id, True, audit)


async def revoke_participant(
    sessions: async_sessionmaker[AsyncSession], subscriber_id: str, decision: Decision, *,
    now: datetime | None = None,
) -> Outcome:
    """Take a participant out of the network for good: every entry UNSUBSCRIBED, every key not
    yet revoked revoked now. Coming back needs a new key and an approval. Repeating it on a
    participant already fully revoked changes nothing."""
    now = truncate_ms(now or datetime.now(UTC))
    async with sessions() as session, session.begin():
        entries = await _entries(session, subscriber_id, None, None)
        audit = []
        for entry in entries:
            if entry.status != S.UNSUBSCRIBED.value:
                audit.append(_record(session, decision, Action.REVOKE_PARTICIPANT, now, subscriber_id, entry=entry,
                                     from_state=entry.status, to_state=S.UNSUBSCRIBED.value))
                entry.status, entry.updated = S.UNSUBSCRIBED.value, now
        for key in await _keys(session, subscriber_id):
            if key.revoked_at is None:
                audit.append(_revoke(session, key, decision, Action.REVOKE_PARTICIPANT, now))
    _log(Action.REVOKE_PARTICIPANT, subscriber_id, audit)
    return Outcome(Action.REVOKE_PARTICIPANT, subscriber_id, bool(audit), audit)


def _revoke(session: AsyncSession, key: RegistryKey, decision: Decision, action: Action,
            now: datetime) -> RegistryAudit:
    before = key_state(key, now)  # valid, expired or not yet valid: all become revoked
    key.revoked_at = now
    return _record(session, decision, action, now, key.subscriber_id, key=key, from_state=before,
                   to_state="revoked")


def _log(action: Action, subscriber_id: str, audit: Sequence[RegistryAudit]) -> None:
    # Operator names stay in the audit table; the log says only what changed.
    if audit:
        log.info("registry.lifecycle", action=action.value, subscriber_id=subscriber_id, changes=len(audit))


async def audit_trail(session: AsyncSession, *, subscriber_id: str | None = None,
                      limit: int = 1000) -> list[RegistryAudit]:
    """The most recent decisions first."""
    query = select(RegistryAudit).order_by(RegistryAudit.at.desc(), RegistryAudit.id.desc()).limit(limit)
    if subscriber_id is not None:
        query = query.where(RegistryAudit.subscriber_id == subscriber_id)
    return list((await session.execute(query)).scalars().all())


def audit_json(row: RegistryAudit) -> dict[str, object]:
    return {"at": wire_time(row.at), "actor": row.actor, "action": row.action, "subscriber_id": row.subscriber_id,
            "type": row.type, "domain": row.domain, "unique_key_id": row.unique_key_id,
            "from": row.from_state, "to": row.to_state, "reason": row.reason}


def effective_status(status: str, key_states: Iterable[str]) -> str:
    """The status the operator should see: a SUBSCRIBED entry whose keys have all expired (none
    valid or pending) is EXPIRED in effect, since lookups no longer show it."""
    states = list(key_states)
    if status == S.SUBSCRIBED.value and "expired" in states and not {"valid", "not yet valid"} & set(states):
        return S.EXPIRED.value
    return status


__all__ = [
    "Action",
    "Decision",
    "IllegalTransition",
    "NotFound",
    "Outcome",
    "TRANSITIONS",
    "audit_json",
    "audit_trail",
    "change_status",
    "effective_status",
    "revoke_key",
    "revoke_participant",
]
