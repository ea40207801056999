"""PRE-ORDER payments on the BPP's side: the payment link made at `init`, the check at `confirm`,
the refund on cancellation. The processor (bpp.payments.processor) takes the money; this module
keeps the BPP's own record of each link in `bpp_payment`.

A `Payments` object (the configured processor and the link lifetime) is made once by the
composition root and attached to the node's session factory (`attach`): every session of the BPP
carries it in `session.info`, so the Beckn handlers and `refund_order` reach the processor
without any global state, and a session made elsewhere (a test's) simply has no processor.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from beckn.errors import ErrorCode
from bpp.payments.processor import ChargeStatus, PaymentError, PaymentProcessor
from bpp.tables import BppOrder, BppPayment, BppProvider
from bpp.terms import payment_types_of

log = structlog.get_logger(__name__)

PRE_ORDER = "PRE-ORDER"
ON_FULFILLMENT = "ON-FULFILLMENT"
# Stable Beckn Payment ids of the two terms: catalogues list them, items name them in payment_ids.
PAYMENT_IDS = {ON_FULFILLMENT: "paiement-a-la-remise", PRE_ORDER: "prepaiement-en-ligne"}

# bpp_payment.status
PENDING, PAID, EXPIRED, REFUNDED, PARTIALLY_REFUNDED = "PENDING", "PAID", "EXPIRED", "REFUNDED", "PARTIALLY_REFUNDED"

_INFO_KEY = "lakou.payments"
# A link about to expire is not handed out again: the buyer needs time to pay it.
_REUSE_MARGIN = timedelta(minutes=2)


class PaymentProblem(Exception):
    """A payment reason to refuse a Beckn request (bpp.orders turns it into an error callback)."""

    def __init__(self, code: str, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.path = code, message, path


@dataclass(frozen=True)
class Payments:
    processor: PaymentProcessor | None
    link_ttl: timedelta = timedelta(minutes=30)

    def offered(self, provider: BppProvider) -> list[str]:
        """The provider's payment types this BPP can take: PRE-ORDER only with a processor."""
        return [kind for kind in payment_types_of(provider) if kind != PRE_ORDER or self.processor is not None]


def attach(sessions: async_sessionmaker[AsyncSession], payments: Payments) -> None:
    """Give every session of this factory the BPP's payments (read back with `payments_of`)."""
    sessions.configure(info={_INFO_KEY: payments})


def payments_of(session: AsyncSession) -> Payments:
    found = session.info.get(_INFO_KEY)
    return found if isinstance(found, Payments) else Payments(None)


def _now() -> datetime:
    return datetime.now(UTC)


def payment_json(row: BppPayment, *, paid: bool) -> dict[str, Any]:
    """The Beckn Payment of a prepayment link (1.1.1 Payment: status is PAID or NOT-PAID only)."""
    out: dict[str, Any] = {
        "id": PAYMENT_IDS[PRE_ORDER], "type": PRE_ORDER, "collected_by": "BPP",
        "status": "PAID" if paid else "NOT-PAID",
        "params": {"transaction_id": row.id, "amount": _money(row.amount), "currency": row.currency},
    }
    if not paid:
        out["url"] = row.url
    return out


def _money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):f}"


# ------------------------------------------------------------------------------ init


async def payment_link(session: AsyncSession, *, bap_id: str, transaction_id: str, provider: BppProvider,
                       amount: Decimal, currency: str, description: str) -> BppPayment:
    """The transaction's payment link for `amount`: the open one made by an earlier init for the
    same amount (a BAP re-sending init must not make the buyer pay twice), else a new charge."""
    payments = payments_of(session)
    processor = payments.processor
    if processor is None:
        raise PaymentProblem(ErrorCode.PAYMENT_NOT_SUPPORTED, "this BPP takes no online payment: pay ON-FULFILLMENT")
    now = _now()
    candidates = (await session.execute(
        select(BppPayment).where(
            BppPayment.bap_id == bap_id, BppPayment.transaction_id == transaction_id,
            BppPayment.provider_id == provider.id, BppPayment.order_id.is_(None),
            BppPayment.processor == processor.name, BppPayment.status.in_((PENDING, PAID)),
            BppPayment.currency == currency, BppPayment.expires_at > now + _REUSE_MARGIN,
        ).order_by(BppPayment.created_at.desc()))).scalars().all()
    for row in candidates:
        if row.amount != amount:
            continue
        status = await _refresh(session, processor, row)
        if status in (PENDING, PAID):
            return row
    reference = "pay_" + secrets.token_urlsafe(18)
    expires_at = now + payments.link_ttl
    try:
        charge = await processor.create_charge(session, amount=amount, currency=currency, description=description,
                                               expires_at=expires_at, reference=reference)
    except PaymentError as exc:
        raise PaymentProblem(ErrorCode.BUSINESS_ERROR, f"the payment processor could not make a payment link: {exc}; "
                             "try again later or pay ON-FULFILLMENT", "message.order.payments[0]") from exc
    row = BppPayment(id=reference, bap_id=bap_id, transaction_id=transaction_id, provider_id=provider.id,
                     processor=processor.name, processor_ref=charge.ref, url=charge.url, amount=amount,
                     currency=currency, status=PENDING, expires_at=expires_at)
    session.add(row)
    await session.flush()
    log.info("bpp.payment_link", payment_id=row.id, provider_id=provider.id, amount=_money(amount),
             processor=processor.name)
    return row


async def refresh_status(session: AsyncSession, row: BppPayment) -> str:
    """The row's status, a PENDING one first brought up to date with the processor."""
    processor = payments_of(session).processor
    return row.status if processor is None else await _refresh(session, processor, row)


async def _refresh(session: AsyncSession, processor: PaymentProcessor, row: BppPayment) -> str:
    """Bring a PENDING row up to date with the processor (PAID or EXPIRED); returns its status."""
    if row.status != PENDING:
        return row.status
    try:
        status = await processor.charge_status(session, row.processor_ref)
    except PaymentError as exc:
        raise PaymentProblem(ErrorCode.BUSINESS_ERROR, f"the payment processor cannot be reached ({exc}); "
                             "try again in a moment", "message.order.payments[0]") from exc
    now = _now()
    if status is ChargeStatus.PAID:
        row.status, row.paid_at, row.updated_at = PAID, now, now
    elif status is ChargeStatus.EXPIRED or row.expires_at <= now:
        row.status, row.updated_at = EXPIRED, now
    return row.status


# ------------------------------------------------------------------------------ confirm


async def paid_payment(session: AsyncSession, *, bap_id: str, transaction_id: str, provider_id: str,
                       payment_ref: str | None, amount: Decimal, currency: str) -> BppPayment:
    """The transaction's prepayment, once the processor says it is paid; raises PaymentProblem
    (nothing written but the row's status) when it is missing, unpaid, expired or for another amount."""
    processor = payments_of(session).processor
    path = "message.order.payments[0]"
    if processor is None:
        raise PaymentProblem(ErrorCode.PAYMENT_NOT_SUPPORTED, "this BPP takes no online payment: pay ON-FULFILLMENT",
                             f"{path}.type")
    query = select(BppPayment).where(BppPayment.bap_id == bap_id, BppPayment.transaction_id == transaction_id,
                                     BppPayment.provider_id == provider_id)
    if payment_ref:
        query = query.where(BppPayment.id == payment_ref)
    rows = (await session.execute(query.order_by(BppPayment.created_at.desc()))).scalars().all()
    if not rows:
        raise PaymentProblem(
            ErrorCode.BUSINESS_ERROR,
            f"no payment {payment_ref!r} in this transaction" if payment_ref else
            "no payment link for this transaction: send init with a PRE-ORDER payment first, then pay at its url",
            f"{path}.params.transaction_id" if payment_ref else f"{path}.type")
    # Without a reference, the newest link still worth checking: a paid one before an open one.
    row = rows[0]
    for candidate in rows:
        if await _refresh(session, processor, candidate) == PAID:
            row = candidate
            break
    if row.status in (REFUNDED, PARTIALLY_REFUNDED):
        raise PaymentProblem(ErrorCode.BUSINESS_ERROR,
                             f"payment {row.id} was refunded ({_money(row.refunded)} {row.currency}): "
                             "send init again for a new payment link", f"{path}.params.transaction_id")
    if row.status == EXPIRED:
        raise PaymentProblem(ErrorCode.BUSINESS_ERROR, f"payment link {row.id} expired before it was paid: "
                             "send init again for a new link", f"{path}.params.transaction_id")
    if row.status != PAID:
        raise PaymentProblem(ErrorCode.BUSINESS_ERROR,
                             f"payment {row.id} is not paid yet: the buyer must first pay {_money(row.amount)} "
                             f"{row.currency} at {row.url}, then confirm again", f"{path}.status")
    if row.amount != amount or row.currency != currency:
        raise PaymentProblem(ErrorCode.BUSINESS_ERROR,
                             f"payment {row.id} paid {_money(row.amount)} {row.currency} but the order now costs "
                             f"{_money(amount)} {currency}: send init again for a payment link of the new total",
                             f"{path}.params.amount")
    return row


# ------------------------------------------------------------------------------ refunds


async def refund_payment(session: AsyncSession, row: BppPayment, amount: Decimal) -> Decimal:
    """Refund `amount` (at most what is left) of a paid prepayment through its processor; returns
    what was refunded. Raises PaymentProblem when the processor is not this BPP's or refuses."""
    amount = min(amount, row.amount - row.refunded)
    if amount <= 0 or row.status not in (PAID, PARTIALLY_REFUNDED):
        return Decimal("0")
    processor = payments_of(session).processor
    if processor is None or processor.name != row.processor:
        raise PaymentProblem(ErrorCode.BUSINESS_ERROR,
                             f"payment {row.id} was taken by processor {row.processor!r}, which this BPP no longer "
                             "runs: the merchant must refund it by hand")
    try:
        await processor.refund(session, row.processor_ref, amount)
    except PaymentError as exc:
        raise PaymentProblem(ErrorCode.BUSINESS_ERROR, f"the refund of payment {row.id} failed: {exc}; try again "
                             "later") from exc
    row.refunded = row.refunded + amount
    row.status = REFUNDED if row.refunded >= row.amount else PARTIALLY_REFUNDED
    row.updated_at = _now()
    await session.flush()
    log.info("bpp.payment_refunded", payment_id=row.id, order_id=row.order_id, amount=_money(amount),
             status=row.status)
    return amount


async def refund_order(session: AsyncSession, order: BppOrder, fee: Decimal) -> Decimal:
    """Refund what the buyer prepaid for `order`, less `fee` (never below 0), in the caller's
    transaction; returns the amount refunded (0 when nothing was prepaid). The order's Beckn
    payment gets a `lakou:refund` tag group with the refunded amount and the payment's status.

    Raises `bpp.orders.OrderProblem` (40000) when the processor refuses: the caller rolls back."""
    rows = (await session.execute(
        select(BppPayment).where(BppPayment.order_id == order.id, BppPayment.status.in_((PAID, PARTIALLY_REFUNDED)))
        .order_by(BppPayment.created_at))).scalars().all()
    fee_left = max(fee, Decimal("0"))
    refunded = Decimal("0")
    try:
        for row in rows:
            kept = min(fee_left, row.amount - row.refunded)  # the fee is kept from the first payment(s)
            fee_left -= kept
            refunded += await refund_payment(session, row, row.amount - row.refunded - kept)
    except PaymentProblem as problem:
        from bpp.orders import OrderProblem  # here: bpp.orders imports this module

        raise OrderProblem(problem.code, problem.message, problem.path) from problem
    if rows:
        total_refunded = sum((row.refunded for row in rows), Decimal("0"))
        tags = [tag for tag in (order.payment.get("tags") or []) if
                (tag.get("descriptor") or {}).get("code") != "lakou:refund"]
        tags.append({"descriptor": {"code": "lakou:refund"}, "list": [
            {"descriptor": {"code": "amount"}, "value": _money(total_refunded)},
            {"descriptor": {"code": "currency"}, "value": rows[0].currency},
            {"descriptor": {"code": "status"}, "value": rows[-1].status},
        ]})
        order.payment = {**order.payment, "tags": tags}  # a new dict: the JSON column sees the change
        await session.flush()
    return refunded


__all__ = ["ON_FULFILLMENT", "PAYMENT_IDS", "PRE_ORDER", "PaymentProblem", "Payments", "attach", "paid_payment",
           "payment_json", "payment_link", "payments_of", "refresh_status", "refund_order", "refund_payment"]
