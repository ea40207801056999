"""Payments of the BPP: PRE-ORDER payment links through a pluggable payment processor.

- `bpp.payments.processor`: the `PaymentProcessor` protocol and how `bpp_payment_processor` picks one;
- `bpp.payments.sandbox`: the sandbox processor (no money moves) and its checkout page;
- `bpp.payments.prepayment`: the BPP's record of each link (`bpp_payment`), used by init, confirm
  and cancel (`refund_order`).
"""

from bpp.payments.prepayment import (
    ON_FULFILLMENT,
    PAYMENT_IDS,
    PRE_ORDER,
    PaymentProblem,
    Payments,
    attach,
    paid_payment,
    payment_json,
    payment_link,
    payments_of,
    refresh_status,
    refund_order,
    refund_payment,
)
from bpp.payments.processor import Charge, ChargeStatus, PaymentError, PaymentProcessor, load_processor

__all__ = ["ON_FULFILLMENT", "PAYMENT_IDS", "PRE_ORDER", "Charge", "ChargeStatus", "PaymentError", "PaymentProblem",
           "PaymentProcessor", "Payments", "attach", "load_processor", "paid_payment", "payment_json", "payment_link",
           "payments_of", "refresh_status", "refund_order", "refund_payment"]
