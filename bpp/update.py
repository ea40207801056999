"""`update`: the buyer changes an active order's billing or its fulfillment (Beckn 1.1 `update`).

The request names what changes in `message.update_target` (comma-separated: `billing`,
`fulfillment`; `fulfillments` is read as `fulfillment`) and sends `message.order` with the order's
`id` and those parts as they should now be. Only the named parts are read; the BAP may echo the
rest of the order, but its items must then be the order's (items cannot be changed: cancel and
order again). What a buyer may change, and when:

- **billing** (name, phone, e-mail, address): while the order is ACTIVE. The fields sent replace
  the stored ones; the result is checked as `init` checks it (a name, a well-formed e-mail).
- **fulfillment**, the buyer's part of it:
  - `customer` (the person who collects or receives, their contact): while ACTIVE;
  - a Delivery's `end` stop: its `location` while the order is not yet out for delivery
    (RECEIVED or PACKED; the new drop-off must lie in the delivery zone, 30008, and the delivery
    fee is priced again), its `contact`, `person` and `instructions` while ACTIVE;
  - the fulfillment `type` (Self-Pickup <-> Delivery, by `type` or by the other fulfillment's
    `id`): only while RECEIVED and not prepaid; the order is quoted again (the items at the
    order's prices, plus the delivery fee of the new fulfillment).
  A prepaid order's total cannot change (50002).

Refusals (an `on_update` with `error`, nothing changed): an unknown or unsupported target 30012;
`message.order.id` missing or not an order of this buyer app 30010; an inconsistent request (the
items or provider differ from the order's, a target names a part that was not sent, a change
that changes nothing) 30013; a change the order's state no longer allows 50002; a drop-off outside
the zone or a type the merchant does not offer 30008.

An accepted update is written by a conditional UPDATE (the order as it was read: a merchant moving
it on in between makes us read it again), in the same transaction as its `on_update`; the answer
is the whole updated order (`bpp.orders.order_json`). A retransmitted request (same message_id) is
answered once by the service; a resent change under a new message_id sets the same values again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from beckn.errors import ErrorCode
from beckn.models import Fulfillment, Order
from bpp import orders
from bpp.catalogue import fulfillment_id, money
from bpp.fulfilment import FEE_TITLE, delivery_terms, fee_for
from bpp.lifecycle import fulfillment_state
from bpp.orders import OrderProblem
from bpp.tables import BppOrder, BppProvider

log = structlog.get_logger(__name__)

UPDATABLE = ("billing", "fulfillment")
_ALIASES = {"fulfillments": "fulfillment"}
# A Delivery's drop-off may move until the courier has left.
ADDRESS_CHANGE_STATES = ("RECEIVED", "PACKED")
TYPE_CHANGE_STATE = "RECEIVED"
_CHANGED_RETRIES = 3
_F = "message.order.fulfillments[0]"


@dataclass
class Changes:
    """What one update writes (only the parts that change)."""

    values: dict[str, Any] = field(default_factory=dict)
    applied: list[str] = field(default_factory=list)


def targets_of(update_target: str) -> list[str]:
    targets: list[str] = []
    for raw in update_target.split(","):
        name = raw.strip().lower()
        name = _ALIASES.get(name, name)
        if not name:
            continue
        if name not in UPDATABLE:
            raise OrderProblem(ErrorCode.INVALID_UPDATE_TARGET,
                               f"update_target {raw.strip()!r} cannot be updated here; use one or more of "
                               f"{', '.join(UPDATABLE)} (to change the items, cancel the order and order again)",
                               "message.update_target")
        if name not in targets:
            targets.append(name)
    if not targets:
        raise OrderProblem(ErrorCode.INVALID_UPDATE_TARGET,
                           f"update_target names nothing to update; use one or more of {', '.join(UPDATABLE)}",
                           "message.update_target")
    return targets


async def apply(session: AsyncSession, message: Any, *, bap_id: str) -> tuple[BppOrder, list[str]]:
    """Apply the update to the buyer app's order; returns the order and the parts changed.
    Raises OrderProblem (nothing written)."""
    targets = targets_of(message.update_target)
    order: Order = message.order
    if not order.id:
        raise OrderProblem(ErrorCode.ORDER_NOT_FOUND, "message.order.id is required: the id of the order to update",
                           "message.order.id")
    for _ in range(_CHANGED_RETRIES):
        try:
            row = await orders.find_order(session, order.id, bap_id)
        except OrderProblem:
            raise OrderProblem(ErrorCode.ORDER_NOT_FOUND, f"order {order.id!r} not found", "message.order.id") from None
        changes = await _changes(session, row, order, targets)
        changes.values["updated_at"] = datetime.now(UTC)
        written = await session.execute(
            update(BppOrder).where(BppOrder.id == row.id, BppOrder.status == "ACTIVE",
                                   BppOrder.updated_at == row.updated_at)
            .values(**changes.values).execution_options(synchronize_session=False))
        if written.rowcount == 1:
            await session.flush()
            await session.refresh(row)
            # ids and part names only: billing and addresses are personal data.
            log.info("bpp.order_updated", order_id=row.id, provider_id=row.provider_id, targets=changes.applied,
                     bap_id=bap_id)
            return row, changes.applied
        await session.rollback()  # changed since we read it: read it again
    raise OrderProblem(ErrorCode.UPDATION_NOT_POSSIBLE, f"order {order.id!r} keeps changing; try again",
                       "message.order.id")


async def _changes(session: AsyncSession, row: BppOrder, order: Order, targets: list[str]) -> Changes:
    if row.status != "ACTIVE":
        raise OrderProblem(ErrorCode.UPDATION_NOT_POSSIBLE,
                           f"order {row.id!r} is {row.status.lower()}: it can no longer be updated", "message.order.id")
    await _check_consistent(session, row, order)
    provider = await session.get(BppProvider, row.provider_id)
    assert provider is not None  # noqa: S101 - foreign key
    changes = Changes()
    if "billing" in targets:
        if order.billing is None:
            raise OrderProblem(ErrorCode.UPDATE_INCONSISTENCY,
                               "update_target names billing but message.order.billing is missing",
                               "message.order.billing")
        merged = {**row.billing, **order.billing.to_wire()}
        changes.values["billing"] = orders.billing(Order.model_validate({"billing": merged}))
        changes.applied.append("billing")
    if "fulfillment" in targets:
        if not order.fulfillments:
            raise OrderProblem(ErrorCode.UPDATE_INCONSISTENCY,
                               "update_target names fulfillment but message.order.fulfillments is missing",
                               "message.order.fulfillments")
        if len(order.fulfillments) > 1:
            raise OrderProblem(ErrorCode.UPDATE_INCONSISTENCY, "an order has one fulfillment: send one",
                               "message.order.fulfillments")
        await _fulfillment_changes(session, row, provider, order.fulfillments[0], changes)
        changes.applied.append("fulfillment")
    return changes


async def _check_consistent(session: AsyncSession, row: BppOrder, order: Order) -> None:
    """Parts the BAP echoes but may not change (provider, items) must be the order's."""
    if order.provider is not None and order.provider.id and order.provider.id != row.provider_id:
        raise OrderProblem(ErrorCode.UPDATE_INCONSISTENCY,
                           f"order {row.id!r} is from provider {row.provider_id!r}, not {order.provider.id!r}",
                           "message.order.provider.id")
    if not order.items:
        return
    ordered = {line.item_id: line.quantity for line in await orders.order_lines(session, row.id)}
    sent: dict[str, int] = {}
    for index, item in enumerate(order.items):
        count = item.quantity.selected.count if item.quantity and item.quantity.selected else None
        if not item.id or item.id not in ordered or (count is not None and count != ordered[item.id]):
            raise OrderProblem(ErrorCode.UPDATE_INCONSISTENCY,
                               "the items of an order cannot be updated (cancel it and order again): "
                               f"message.order.items[{index}] is not one of the order's lines as ordered",
                               f"message.order.items[{index}]")
        sent[item.id] = count if count is not None else ordered[item.id]
    if sent != ordered:
        raise OrderProblem(ErrorCode.UPDATE_INCONSISTENCY,
                           "the items of an order cannot be updated (cancel it and order again): "
                           "message.order.items leaves out some of the order's lines", "message.order.items")


def _prepaid(row: BppOrder) -> bool:
    return row.payment.get("type") == "PRE-ORDER" or row.payment.get("status") == "PAID"


def _refuse_in_state(row: BppOrder, what: str, allowed: tuple[str, ...], path: str) -> None:
    state = fulfillment_state(row)
    if state not in allowed:
        raise OrderProblem(ErrorCode.UPDATION_NOT_POSSIBLE,
                           f"order {row.id!r} is {state}: {what} can only change while it is "
                           f"{' or '.join(allowed)}; contact the merchant (support)", path)


async def _fulfillment_changes(session: AsyncSession, row: BppOrder, provider: BppProvider,
                               requested: Fulfillment, changes: Changes) -> None:
    current = row.fulfillment
    kind = current.get("type")
    offered = {fulfillment_id(provider.id, offered_kind): offered_kind for offered_kind in provider.fulfillment_types}
    wanted = kind
    if requested.type:
        wanted = requested.type
    elif requested.id and requested.id != current.get("id"):
        if requested.id not in offered:
            raise OrderProblem(ErrorCode.UPDATE_INCONSISTENCY,
                               f"fulfillment {requested.id!r} is neither this order's nor one its merchant offers",
                               f"{_F}.id")
        wanted = offered[requested.id]

    if wanted != kind:
        _refuse_in_state(row, "the fulfillment type", (TYPE_CHANGE_STATE,), f"{_F}.type")
        if _prepaid(row):
            raise OrderProblem(ErrorCode.UPDATION_NOT_POSSIBLE,
                               f"order {row.id!r} is prepaid: its fulfillment type, hence its price, cannot change; "
                               "cancel it and order again", f"{_F}.type")
        ask = Order.model_validate({"provider": {"id": provider.id},
                                    "fulfillments": [requested.to_wire() | {"type": wanted}]})
        fulfillment = orders.fulfillment(provider, ask, need_address=True)  # 30008 when not offered / out of zone
        if "customer" not in fulfillment and current.get("customer"):
            fulfillment["customer"] = current["customer"]
        fulfillment["state"] = current.get("state")
        changes.values["fulfillment"] = fulfillment
        await _reprice(session, row, provider, fulfillment, changes)
        return

    fulfillment = dict(current)
    changed = False
    if requested.customer is not None:
        fulfillment["customer"] = requested.customer.to_wire()
        changed = True
    stops = list(current.get("stops") or ())
    for index, stop in enumerate(requested.stops or ()):
        path = f"{_F}.stops[{index}]"
        stop_type = (stop.type or "").lower()
        if stop_type == "start":
            # The merchant's end of the fulfillment: an echo is fine, moving it is not the buyer's to do.
            start = next((s for s in stops if s.get("type") == "start"), {})
            asked = (stop.location.id if stop.location is not None else None) or stop.id
            if asked and asked != (start.get("location") or {}).get("id"):
                raise OrderProblem(ErrorCode.UPDATE_INCONSISTENCY,
                                   "the start stop is the merchant's (where the order is collected or leaves "
                                   "from) and cannot be changed by update", f"{path}.location.id")
            continue
        if stop_type != "end" or kind != "Delivery":
            raise OrderProblem(ErrorCode.UPDATE_INCONSISTENCY,
                               f"a {kind} order has no {stop.type or 'untyped'} stop the buyer can change; "
                               "a Delivery's end stop can", f"{path}.type")
        end_index = next((i for i, s in enumerate(stops) if s.get("type") == "end"), None)
        end = dict(stops[end_index]) if end_index is not None else {"type": "end"}
        if stop.location is not None:
            location = stop.location.to_wire()
            if location != end.get("location"):
                _refuse_in_state(row, "the delivery address", ADDRESS_CHANGE_STATES, f"{path}.location")
                orders.check_zone(provider, stop.location.gps, need_address=True)  # the same check as init
                end["location"] = location
        for part in ("contact", "person", "instructions"):
            value = getattr(stop, part)
            if value is not None:
                end[part] = value.to_wire()
        if end_index is None:
            stops.append(end)
        else:
            stops[end_index] = end
        changed = True
    if not changed:
        raise OrderProblem(ErrorCode.UPDATE_INCONSISTENCY,
                           "message.order.fulfillments[0] changes nothing the buyer may change: its customer, a "
                           "Delivery's end stop, or its type", _F)
    fulfillment["stops"] = stops
    changes.values["fulfillment"] = fulfillment
    if kind == "Delivery":
        await _reprice(session, row, provider, fulfillment, changes)


async def _reprice(session: AsyncSession, row: BppOrder, provider: BppProvider, fulfillment: dict[str, Any],
                   changes: Changes) -> None:
    """Quote the order again: its items at the prices it was ordered at, plus the delivery fee of
    `fulfillment` (a Delivery's line, as `bpp.orders.quote_json` writes it)."""
    lines = await orders.order_lines(session, row.id)
    items_total = sum((line.line_total for line in lines), Decimal("0"))
    breakup = [line for line in row.quote.get("breakup") or () if "item" in line]
    total = items_total
    if fulfillment["type"] == "Delivery":
        fee = fee_for(delivery_terms(provider.location), items_total)
        breakup.append({"title": FEE_TITLE[row.lang], "price": {"currency": row.currency, "value": money(fee)}})
        total += fee
    if total == row.total:
        if breakup != row.quote.get("breakup"):
            changes.values["quote"] = {**row.quote, "breakup": breakup}
        return
    if _prepaid(row):
        raise OrderProblem(ErrorCode.UPDATION_NOT_POSSIBLE,
                           f"order {row.id!r} is prepaid {money(row.total)} {row.currency}; this change would make "
                           f"it {money(total)}: cancel it and order again", _F)
    changes.values["total"] = total
    changes.values["quote"] = {**row.quote, "price": {"currency": row.currency, "value": money(total)},
                               "breakup": breakup}
    payment = dict(row.payment)
    if isinstance(payment.get("params"), dict):
        payment["params"] = {**payment["params"], "amount": money(total)}
    changes.values["payment"] = payment


__all__ = ["ADDRESS_CHANGE_STATES", "TYPE_CHANGE_STATE", "UPDATABLE", "apply", "targets_of"]
