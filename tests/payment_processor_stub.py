"""A third-party payment processor as a plugin would ship one, for tests/test_bpp_payments.py.

Loaded by LAKOU_BPP_PAYMENT_PROCESSOR=payment_processor_stub:factory: it stands for a remote PSP
(it ignores the BPP's database session) whose book is this process's `BOOK`, which the test
marks paid as the PSP's webhook would."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bpp.payments import Charge, ChargeStatus, PaymentError

BOOK: dict[str, dict[str, Any]] = {}


class StubPsp:
    name = "stub-psp"

    def __init__(self, merchant_account: str) -> None:
        self.merchant_account = merchant_account

    async def create_charge(self, db: AsyncSession, *, amount: Decimal, currency: str, description: str,  # noqa: ARG002
                            expires_at: datetime, reference: str) -> Charge:
        ref = "psp_" + uuid.uuid4().hex
        BOOK[ref] = {"amount": amount, "currency": currency, "reference": reference, "status": ChargeStatus.OPEN,
                     "refunded": Decimal("0"), "account": self.merchant_account}
        return Charge(ref=ref, url=f"https://psp.example.fr/checkout/{ref}")

    async def charge_status(self, db: AsyncSession, ref: str) -> ChargeStatus:  # noqa: ARG002
        return BOOK[ref]["status"]

    async def refund(self, db: AsyncSession, ref: str, amount: Decimal) -> None:  # noqa: ARG002
        charge = BOOK[ref]
        if charge["status"] != ChargeStatus.PAID or charge["refunded"] + amount > charge["amount"]:
            raise PaymentError("nothing left to refund")
        charge["refunded"] += amount


def factory(settings: Any) -> StubPsp:
    return StubPsp(merchant_account=settings.subscriber_id or "unknown")


def not_a_processor(settings: Any) -> object:  # noqa: ARG001
    return object()
