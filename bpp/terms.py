"""A merchant's trading terms: how buyers may pay, cancel and return (set per provider).

These are the merchant's own rules, written through the merchant API, the catalogue file or a bulk
import, and kept in `bpp_provider` columns (`payment_types`, `cancellation_terms`,
`return_terms`). A NULL column means "never set": the network's defaults below, which are what
every Lakou order had before merchants could choose, so older catalogues keep working.

- **Payment types** (Beckn `Payment.type`): `ON-FULFILLMENT` (pay the merchant at pickup or on
  delivery) and `PRE-ORDER` (prepay online through a payment link, bpp.payments).
- **Cancellation terms**: for each fulfillment state in which the buyer may still cancel, the fee
  kept by the merchant as a percentage of the order total. A state not listed cannot be cancelled
  by the buyer. The default is free cancellation while the order is `RECEIVED`.
- **Return terms**: whether a completed order may be returned, within how many days, and who
  carries the goods back (the buyer to the shop, or the merchant collects them).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PaymentType = Literal["ON-FULFILLMENT", "PRE-ORDER"]
PAYMENT_TYPES: tuple[str, ...] = ("ON-FULFILLMENT", "PRE-ORDER")
DEFAULT_PAYMENT_TYPES: list[str] = ["ON-FULFILLMENT"]

# Fulfillment states a buyer may cancel in (bpp.merchant_orders has the full state machine);
# COMPLETED is never cancellable: that is what returns are for.
CancellableState = Literal["RECEIVED", "PACKED", "READY_FOR_PICKUP", "OUT_FOR_DELIVERY"]
CANCELLABLE_STATES: tuple[str, ...] = ("RECEIVED", "PACKED", "READY_FOR_PICKUP", "OUT_FOR_DELIVERY")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CancellationTerm(_Strict):
    state: CancellableState = Field(description="The fulfillment state in which this term applies.",
                                     examples=["PACKED"])
    fee_percent: str = Field("0", pattern=r"^(100|[0-9]{1,2})(\.[0-9]{1,2})?$", examples=["20"],
                             description="Share of the order total the merchant keeps, 0 to 100.")

    @field_validator("fee_percent")
    @classmethod
    def _at_most_100(cls, value: str) -> str:
        if Decimal(value) > 100:
            raise ValueError("fee_percent is at most 100")
        return value


DEFAULT_CANCELLATION_TERMS: list[dict[str, Any]] = [{"state": "RECEIVED", "fee_percent": "0"}]


class ReturnTerms(_Strict):
    returnable: bool = Field(False, description="May a completed order be returned?")
    within_days: int | None = Field(None, ge=1, le=60, examples=[14],
                                    description="Days after completion a return may be asked; required when returnable.")
    managed_by: Literal["CONSUMER", "PROVIDER"] = Field(
        "CONSUMER", description="CONSUMER: the buyer brings the goods back to the shop; PROVIDER: the merchant collects.")

    @model_validator(mode="after")
    def _days_when_returnable(self) -> ReturnTerms:
        if self.returnable and self.within_days is None:
            raise ValueError("within_days is required when returnable is true")
        if not self.returnable and self.within_days is not None:
            raise ValueError("within_days is only for returnable goods")
        return self


DEFAULT_RETURN_TERMS: dict[str, Any] = {"returnable": False, "managed_by": "CONSUMER"}


def agreed_terms(provider: Any) -> dict[str, Any]:
    """The terms an order is confirmed under, to keep on the order (`BppOrder.terms`)."""
    return {"cancellation": [term.model_dump() for term in cancellation_terms_of(provider)],
            "returns": return_terms_of(provider).model_dump(exclude_none=True)}


def order_cancellation_terms(order: Any, provider: Any) -> list[CancellationTerm]:
    """The cancellation terms of a confirmed order: those agreed at confirm, else the provider's."""
    if order is not None and order.terms is not None:
        return [CancellationTerm.model_validate(term) for term in order.terms["cancellation"]]
    return cancellation_terms_of(provider)


def order_return_terms(order: Any, provider: Any) -> ReturnTerms:
    if order is not None and order.terms is not None:
        return ReturnTerms.model_validate(order.terms["returns"])
    return return_terms_of(provider)


def unique_payment_types(value: list[str]) -> list[str]:
    if len(set(value)) != len(value):
        raise ValueError("a payment type is listed twice")
    return value


def unique_states(value: list[CancellationTerm]) -> list[CancellationTerm]:
    states = [term.state for term in value]
    if len(set(states)) != len(states):
        raise ValueError("a fulfillment state is listed twice")
    return value


def payment_types_of(provider: Any) -> list[str]:
    """The provider's accepted payment types (its column, else the default)."""
    return list(provider.payment_types or DEFAULT_PAYMENT_TYPES)


def cancellation_terms_of(provider: Any) -> list[CancellationTerm]:
    raw = provider.cancellation_terms
    return [CancellationTerm.model_validate(term) for term in (DEFAULT_CANCELLATION_TERMS if raw is None else raw)]


def return_terms_of(provider: Any) -> ReturnTerms:
    return ReturnTerms.model_validate(provider.return_terms or DEFAULT_RETURN_TERMS)


__all__ = ["CANCELLABLE_STATES", "DEFAULT_CANCELLATION_TERMS", "DEFAULT_PAYMENT_TYPES", "DEFAULT_RETURN_TERMS",
           "PAYMENT_TYPES", "CancellableState", "CancellationTerm", "PaymentType", "ReturnTerms",
           "agreed_terms", "cancellation_terms_of", "order_cancellation_terms", "order_return_terms", "payment_types_of", "return_terms_of", "unique_payment_types", "unique_states"]
