"""The payment-processor interface of the BPP, and how the configured one is chosen.

A payment processor (a PSP: Stripe, a French bank's e-commerce offer, the sandbox) is what takes
the buyer's money for a PRE-ORDER payment. The BPP only ever asks it four things, through the
`PaymentProcessor` protocol: make a charge (a checkout link the buyer pays at), tell the charge's
status, refund part or all of a paid charge. No card or bank data ever reaches the BPP.

`bpp_payment_processor` (LAKOU_BPP_PAYMENT_PROCESSOR) picks it, once, in the composition root
(`bpp.app`): `none` (no online payment: PRE-ORDER is not offered), `sandbox` (`bpp.payments.sandbox`,
for tests and the demo: no money moves), or `package.module:factory` for a third-party processor
— `factory(settings)` gets the BPP settings and returns a `PaymentProcessor`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncSession


class ChargeStatus(StrEnum):
    OPEN = "OPEN"  # waiting for the buyer to pay
    PAID = "PAID"
    EXPIRED = "EXPIRED"  # not paid in time: can no longer be paid


@dataclass(frozen=True, slots=True)
class Charge:
    ref: str  # the processor's id of the charge, kept in bpp_payment.processor_ref
    url: str  # where the buyer pays (the processor's checkout page)


class PaymentError(Exception):
    """The processor refused or failed (a refund above what was paid, a network failure...)."""


@runtime_checkable
class PaymentProcessor(Protocol):
    """What the BPP needs of a payment processor.

    Every method gets `db`, the BPP's open database session: a processor keeping its book in the
    BPP's own database (the sandbox) writes in the caller's transaction, so its book and the BPP's
    payment records commit or roll back together (and SQLite's single writer is never waited for
    by itself); a remote processor ignores it."""

    name: str  # short and stable: stored with every payment (bpp_payment.processor), at most 32 characters

    async def create_charge(self, db: AsyncSession, *, amount: Decimal, currency: str, description: str,
                            expires_at: datetime, reference: str) -> Charge:
        """A new charge of `amount` to be paid before `expires_at`. `description` is shown to the
        buyer on the checkout page (the merchant's name); `reference` is the BPP's payment id."""
        ...

    async def charge_status(self, db: AsyncSession, ref: str) -> ChargeStatus: ...

    async def refund(self, db: AsyncSession, ref: str, amount: Decimal) -> None:
        """Give `amount` of a PAID charge back to the buyer; raises PaymentError when it cannot."""
        ...


NONE = "none"
SANDBOX = "sandbox"


def load_processor(spec: str, settings: Any, *, sandbox: Callable[[], PaymentProcessor]) -> PaymentProcessor | None:
    """The processor named by the `bpp_payment_processor` setting; None for "none".

    Raises ValueError with the reason for a dotted path that cannot be imported or whose factory
    does not give a processor: the BPP then refuses to start rather than take orders it cannot charge."""
    spec = spec.strip()
    if spec == NONE:
        return None
    if spec == SANDBOX:
        return sandbox()
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"payment processor {spec!r}: expected none, sandbox or package.module:factory")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"payment processor {spec!r} cannot be loaded: {exc}") from exc
    processor = factory(settings)
    if not isinstance(processor, PaymentProcessor) or not getattr(processor, "name", None):
        raise ValueError(f"payment processor {spec!r}: {attribute}(settings) did not return a PaymentProcessor "
                         "(name, create_charge, charge_status, refund)")
    if len(processor.name) > 32:
        raise ValueError(f"payment processor {spec!r}: its name {processor.name!r} is longer than 32 characters")
    return processor


__all__ = ["NONE", "SANDBOX", "Charge", "ChargeStatus", "PaymentError", "PaymentProcessor", "load_processor"]
