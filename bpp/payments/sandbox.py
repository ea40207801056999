"""The sandbox payment processor: checkout links that "pay" at the press of a button, no money moving.

For tests and the demo. It behaves like a hosted-checkout processor: `create_charge` gives a
checkout URL, `/sandbox/pay/{charge_id}` on the BPP serves that page (the amount in euros and the
merchant's name, in French, English, Spanish or German by `?lang=`) and its "Pay" button pays the
charge; `POST /sandbox/api/charges/{charge_id}/pay` does the same for scripts and tests, and
`GET /sandbox/api/charges/{charge_id}` reads the charge. As with a real processor's checkout
URL, the charge id is the capability: it is random (144 bits) and only its holder can pay; paying
is the only change these routes make, and an expired charge cannot be paid.

It keeps its own book in `payment_sandbox_charge`, apart from the BPP's `bpp_payment`: the BPP
sees it only through the `PaymentProcessor` protocol, as it would a real processor.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from decimal import Decimal
from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bpp.payments.processor import Charge, ChargeStatus, PaymentError
from bpp.tables import SandboxCharge
from bpp.text import pick_language

CHECKOUT_PREFIX = "/sandbox/pay"
Lang = Annotated[str | None, Query(description="Language of the page: fr, en, es or de (default fr).")]


def _now() -> datetime:
    return datetime.now(UTC)


def _status(charge: SandboxCharge) -> ChargeStatus:
    if charge.status == ChargeStatus.OPEN and charge.expires_at <= _now():
        return ChargeStatus.EXPIRED  # nobody needs to write it down: time alone expires a charge
    return ChargeStatus(charge.status)


class SandboxProcessor:
    """The `PaymentProcessor` of the sandbox; `base_url` is the BPP's public base URL."""

    name = "sandbox"

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    async def create_charge(self, db: AsyncSession, *, amount: Decimal, currency: str, description: str,
                            expires_at: datetime, reference: str) -> Charge:  # noqa: ARG002 - no use for it
        charge = SandboxCharge(id="sbx_" + secrets.token_urlsafe(18), amount=amount, currency=currency,
                               description=description[:200], status=ChargeStatus.OPEN.value, expires_at=expires_at)
        db.add(charge)
        await db.flush()
        return Charge(ref=charge.id, url=f"{self.base_url}{CHECKOUT_PREFIX}/{charge.id}")

    async def charge_status(self, db: AsyncSession, ref: str) -> ChargeStatus:
        charge = await db.get(SandboxCharge, ref, populate_existing=True)
        if charge is None:
            raise PaymentError(f"no sandbox charge {ref!r}")
        return _status(charge)

    async def refund(self, db: AsyncSession, ref: str, amount: Decimal) -> None:
        # Conditional: two refunds at once can never give back more than was paid.
        done = await db.execute(
            update(SandboxCharge)
            .where(SandboxCharge.id == ref, SandboxCharge.status == ChargeStatus.PAID.value,
                   SandboxCharge.refunded + amount <= SandboxCharge.amount)
            .values(refunded=SandboxCharge.refunded + amount))
        if done.rowcount != 1:
            raise PaymentError(f"sandbox charge {ref!r} is not paid or has less than {amount} left to refund")


# ------------------------------------------------------------------------------ checkout page

_TEXT: dict[str, dict[str, str]] = {
    "fr": {"title": "Paiement (bac à sable)", "pay_to": "Payer à", "amount": "Montant", "button": "Payer",
           "paid": "Paiement reçu. Vous pouvez revenir à votre application pour confirmer la commande.",
           "expired": "Ce lien de paiement a expiré : demandez-en un nouveau depuis votre application.",
           "sandbox": "Bac à sable Lakou : aucun argent n'est débité.", "expires": "Valable jusqu'au"},
    "en": {"title": "Payment (sandbox)", "pay_to": "Pay to", "amount": "Amount", "button": "Pay",
           "paid": "Payment received. You can go back to your app to confirm the order.",
           "expired": "This payment link has expired: ask your app for a new one.",
           "sandbox": "Lakou sandbox: no money is taken.", "expires": "Valid until"},
    "es": {"title": "Pago (entorno de pruebas)", "pay_to": "Pagar a", "amount": "Importe", "button": "Pagar",
           "paid": "Pago recibido. Puede volver a su aplicación para confirmar el pedido.",
           "expired": "Este enlace de pago ha caducado: pida uno nuevo desde su aplicación.",
           "sandbox": "Entorno de pruebas Lakou: no se cobra dinero.", "expires": "Válido hasta"},
    "de": {"title": "Zahlung (Sandbox)", "pay_to": "Zahlung an", "amount": "Betrag", "button": "Bezahlen",
           "paid": "Zahlung erhalten. Sie können zur App zurückkehren und die Bestellung bestätigen.",
           "expired": "Dieser Zahlungslink ist abgelaufen: fordern Sie in Ihrer App einen neuen an.",
           "sandbox": "Lakou-Sandbox: Es wird kein Geld abgebucht.", "expires": "Gültig bis"},
}


def euros(amount: Decimal, currency: str, lang: str) -> str:
    """12.5 -> "12,50 €" (fr, es, de) or "€12.50" (en); another currency keeps its code."""
    text = f"{amount.quantize(Decimal('0.01')):,f}"
    if lang != "en":  # French groups with a narrow no-break space, Spanish and German with a dot
        group = "\u202f" if lang == "fr" else "."
        text = text.replace(",", "_").replace(".", ",").replace("_", group)
    symbol = "€" if currency == "EUR" else currency
    return f"{symbol}{text}" if lang == "en" and symbol == "€" else f"{text}\u00a0{symbol}"


def checkout_html(charge: SandboxCharge, lang: str, *, notice: str | None = None) -> str:
    text = _TEXT[lang]
    status = _status(charge)
    if status is ChargeStatus.PAID:
        body = f'<p class="ok">{escape(text["paid"])}</p>'
    elif status is ChargeStatus.EXPIRED:
        body = f'<p class="ko">{escape(text["expired"])}</p>'
    else:
        # The language rides in the action's query: the form has no field to parse.
        body = (f'<form method="post" action="{CHECKOUT_PREFIX}/{escape(charge.id)}?lang={escape(lang)}">'
                f'<button type="submit">{escape(text["button"])} {escape(euros(charge.amount, charge.currency, lang))}'
                "</button></form>"
                f'<p class="small">{escape(text["expires"])} '
                f'{escape(charge.expires_at.strftime("%Y-%m-%d %H:%M UTC"))}</p>')
    if notice:
        body = f'<p class="ko">{escape(notice)}</p>' + body
    return (
        f'<!doctype html><html lang="{escape(lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(text['title'])}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem}"
        "button{font-size:1.2rem;padding:.6rem 1.4rem}.ok{color:#176117}.ko{color:#a11}.small{color:#555}</style>"
        f"</head><body><h1>{escape(text['title'])}</h1>"
        f'<p>{escape(text["pay_to"])} <strong class="merchant">{escape(charge.description)}</strong></p>'
        f'<p>{escape(text["amount"])} : <strong class="amount">{escape(euros(charge.amount, charge.currency, lang))}'
        f"</strong></p>{body}"
        f'<p class="small">{escape(text["sandbox"])}</p></body></html>'
    )


def charge_out(charge: SandboxCharge) -> dict[str, Any]:
    return {"id": charge.id, "status": _status(charge).value, "amount": f"{charge.amount.quantize(Decimal('0.01')):f}",
            "currency": charge.currency, "refunded": f"{charge.refunded.quantize(Decimal('0.01')):f}",
            "expires_at": charge.expires_at.isoformat()}


async def pay(session: AsyncSession, charge_id: str) -> SandboxCharge:
    """Pay an open charge (idempotent for a paid one); 404 unknown, 410 expired."""
    await session.execute(
        update(SandboxCharge)
        .where(SandboxCharge.id == charge_id, SandboxCharge.status == ChargeStatus.OPEN.value,
               SandboxCharge.expires_at > _now())
        .values(status=ChargeStatus.PAID.value, paid_at=_now()))
    await session.commit()
    return await _charge(session, charge_id)


async def _charge(session: AsyncSession, charge_id: str) -> SandboxCharge:
    charge = await session.get(SandboxCharge, charge_id, populate_existing=True)
    if charge is None:
        raise HTTPException(404, f"no sandbox charge {charge_id!r}")
    return charge


# The page needs no script and posts only to itself: a strict policy on top of escaping every text.
_PAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
                 "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def sandbox_routes(sessions: async_sessionmaker[AsyncSession]) -> APIRouter:
    router = APIRouter(tags=["sandbox payments"])

    @router.get(f"{CHECKOUT_PREFIX}/{{charge_id}}", response_class=HTMLResponse,
                summary="The sandbox checkout page of a charge")
    async def checkout(charge_id: str, lang: Lang = None) -> HTMLResponse:
        async with sessions() as session:
            charge = await _charge(session, charge_id)
            return HTMLResponse(checkout_html(charge, pick_language(lang)), headers=_PAGE_HEADERS)

    @router.post(f"{CHECKOUT_PREFIX}/{{charge_id}}", response_class=HTMLResponse,
                 summary="Pay a sandbox charge (the checkout page's button)")
    async def checkout_pay(charge_id: str, lang: Lang = None) -> HTMLResponse:
        async with sessions() as session:
            charge = await pay(session, charge_id)
            status = 410 if _status(charge) is ChargeStatus.EXPIRED else 200
            return HTMLResponse(checkout_html(charge, pick_language(lang)), status_code=status,
                                headers=_PAGE_HEADERS)

    @router.get("/sandbox/api/charges/{charge_id}", summary="A sandbox charge and its status")
    async def read_charge(charge_id: str) -> dict[str, Any]:
        async with sessions() as session:
            return charge_out(await _charge(session, charge_id))

    @router.post("/sandbox/api/charges/{charge_id}/pay", summary="Pay a sandbox charge (scripts, tests, demo)")
    async def pay_charge(charge_id: str) -> dict[str, Any]:
        async with sessions() as session:
            charge = await pay(session, charge_id)
            if _status(charge) is ChargeStatus.EXPIRED:
                raise HTTPException(410, f"sandbox charge {charge_id!r} expired before it was paid")
            return charge_out(charge)

    return router


__all__ = ["CHECKOUT_PREFIX", "SandboxProcessor", "checkout_html", "euros", "sandbox_routes"]
