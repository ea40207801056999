"""Request and response bodies of the orders API (`/api/v1/orders`), with examples for app developers."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, model_validator

from bap.api.schemas import WaitMs

Phone = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9][0-9 .()-]{3,24}$")]
Email = Annotated[str, StringConstraints(strip_whitespace=True, max_length=254,
                                         pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Line = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
Gps = Annotated[str, StringConstraints(strip_whitespace=True,
                                       pattern=r"^-?\d{1,2}(\.\d+)?, ?-?\d{1,3}(\.\d+)?$")]


class Money(BaseModel):
    currency: str | None = Field(None, examples=["EUR"])
    value: str | None = Field(None, description="A decimal string.", examples=["12.50"])


class OrderProvider(BaseModel):
    id: str | None = Field(None, examples=["ti-marche-robert"])
    name: str | None = Field(None, examples=["Ti Marché du Robert"])


class OrderItem(BaseModel):
    id: str | None = None
    name: str | None = Field(None, description="As the merchant named it, in the order's language.")
    quantity: int | None = None
    unit_price: Money | None = None


class QuoteLine(BaseModel):
    item_id: str | None = None
    title: str | None = None
    price: dict[str, Any] | None = None


class OrderQuote(BaseModel):
    total: Money | None = None
    breakup: list[QuoteLine] = []


class OrderState(BaseModel):
    code: str = Field(description="The fulfillment's state: RECEIVED, PACKED, READY_FOR_PICKUP, "
                      "OUT_FOR_DELIVERY, COMPLETED, CANCELLED… (the BPP's code).", examples=["PACKED"])
    label: str | None = Field(None, description="The merchant's name for it, localised.",
                              examples=["Commande préparée"])
    updated_at: str | None = None


class Place(BaseModel):
    id: str | None = None
    name: str | None = None
    address: str | None = None
    gps: str | None = None
    city: str | None = None


class DeliveryPlace(BaseModel):
    address: str | None = None
    gps: str | None = None


class OrderFulfillment(BaseModel):
    id: str | None = None
    type: str | None = Field(None, description="`pickup` or `delivery`.", examples=["pickup"])
    pickup: Place | None = Field(None, description="Where the order is collected (or leaves from).")
    delivery: DeliveryPlace | None = Field(None, description="The drop-off of a delivery.")


class Refund(BaseModel):
    currency: str | None = None
    value: str | None = None
    status: str | None = None


class OrderPayment(BaseModel):
    type: str | None = Field(None, description="`on_fulfillment` (pay at pickup/delivery) or `prepay`.")
    status: str | None = Field(None, description="`paid` or `not_paid`.")
    amount: Money | None = None
    url: str | None = Field(None, description="Where to pay a prepayment not yet paid.")
    refunded: Refund | None = None


class CancellationReasonRef(BaseModel):
    id: str | None = Field(None, examples=["002"])
    name: str | None = Field(None, examples=["Commande passée par erreur"])


class OrderCancellation(BaseModel):
    time: str | None = None
    cancelled_by: str | None = Field(None, examples=["CONSUMER"])
    reason: CancellationReasonRef | None = None
    comment: str | None = None
    fee: Money | None = Field(None, description="What the merchant keeps under its terms.")
    fee_percent: str | None = None
    refunded: Money | None = Field(None, description="What was refunded of a prepayment.")


class CancellationTerm(BaseModel):
    state: str | None = Field(None, description="A fulfillment state in which the order may be cancelled.",
                              examples=["RECEIVED"])
    fee_percent: str | None = Field(None, description="Share of the total the merchant keeps.", examples=["0"])
    fee: Money | None = None
    reason_required: bool = True


class ReturnTerms(BaseModel):
    returnable: bool = False
    within_days: int | None = None
    within: str | None = Field(None, description="ISO 8601 duration.", examples=["P7D"])
    managed_by: str | None = None
    return_location: Place | None = None


ORDER_EXAMPLE: dict[str, Any] = {
    "id": "9b2f4c1e-5d6a-4e7b-8c9d-0a1b2c3d4e5f",
    "order_id": "LK-7QX2M4",
    "bpp_id": "bpp.lakou.mq",
    "provider": {"id": "ti-marche-robert", "name": "Ti Marché du Robert"},
    "items": [{"id": "ananas-victoria", "name": "Ananas Victoria", "quantity": 2,
               "unit_price": {"currency": "EUR", "value": "3.50"}}],
    "quote": {"total": {"currency": "EUR", "value": "7.00"},
              "breakup": [{"item_id": "ananas-victoria", "title": "Ananas Victoria",
                           "price": {"currency": "EUR", "value": "7.00"}}]},
    "status": "ACTIVE",
    "state": {"code": "PACKED", "label": "Commande préparée", "updated_at": "2026-11-23T14:05:00.000Z"},
    "fulfillment": {"id": "ti-marche-robert:pickup", "type": "pickup", "delivery": None,
                    "pickup": {"id": "robert-bourg", "name": "Marché du Robert", "address": "Rue du Marché",
                               "gps": "14.6790, -60.9400", "city": "Le Robert"}},
    "payment": {"type": "on_fulfillment", "status": "not_paid", "amount": {"currency": "EUR", "value": "7.00"},
                "url": None, "refunded": None},
    "billing": {"name": "Marie Joseph", "phone": "+596696000000", "email": "marie@example.mq"},
    "cancellation": None,
    "cancellation_terms": [{"state": "RECEIVED", "fee_percent": "0", "fee": None, "reason_required": True}],
    "return_terms": {"returnable": False, "within_days": None, "within": None, "managed_by": None,
                     "return_location": None},
    "created_at": "2026-11-23T13:58:02.114Z",
    "confirmed_at": "2026-11-23T14:00:11.532Z",
    "updated_at": "2026-11-23T14:05:00.000Z",
}


class OrderOut(BaseModel):
    """An order as the app shows it. `id` is the cart's id; `order_id` the merchant's order number."""

    id: str
    order_id: str | None = None
    bpp_id: str | None = None
    provider: OrderProvider
    items: list[OrderItem] = []
    quote: OrderQuote | None = None
    status: Literal["ACTIVE", "COMPLETE", "CANCELLED"] | None = Field(
        None, description="ACTIVE until the order is complete or cancelled.")
    state: OrderState | None = None
    fulfillment: OrderFulfillment | None = None
    payment: OrderPayment | None = None
    billing: dict[str, Any] | None = Field(None, description="The citizen's details as given at checkout "
                                           "(or updated since); only this session sees them.")
    cancellation: OrderCancellation | None = Field(None, description="Set once the order is cancelled.")
    cancellation_terms: list[CancellationTerm] = []
    return_terms: ReturnTerms | None = None
    created_at: str | None = None
    confirmed_at: str | None = None
    updated_at: str | None = None

    model_config = {"json_schema_extra": {"examples": [ORDER_EXAMPLE]}}


class OrderPage(BaseModel):
    page: int
    page_size: int
    total: int
    orders: list[OrderOut]

    model_config = {"json_schema_extra": {"examples": [
        {"page": 1, "page_size": 20, "total": 1, "orders": [ORDER_EXAMPLE]}]}}


class ActionError(BaseModel):
    code: str | None = Field(None, description="The BPP's error code (BECKN-005) or the API's.", examples=["50001"])
    message: str | None = Field(None, description="For the citizen, in their language.")
    detail: str | None = Field(None, description="For developers (English, or the BPP's own words).")
    path: Any = None
    http_status: int | None = None


class OrderActionOut(BaseModel):
    """The answer to an action on an order: the order as it now stands, plus the action's result."""

    action: str = Field(examples=["cancel"])
    status: Literal["answered", "error", "pending", "failed", "expired"] = Field(
        description="answered: done; error: the merchant refused (`error`); pending: no answer yet (watch "
        "GET /orders/{id}/events or poll /transactions/{id}/messages/{message_id}); failed: the merchant's "
        "server refused or could not be reached; expired: no answer in time.")
    message_id: str
    order: OrderOut
    result: dict[str, Any] | None = Field(None, description="What the action returned: `cancellation` for "
                                          "cancel, `tracking` for track, `support` for support, `ratings` "
                                          "for rating, `updated` for an update.")
    error: ActionError | None = None

    model_config = {"json_schema_extra": {"examples": [{
        "action": "cancel", "status": "answered", "message_id": "3f0c0a55-2a43-4d55-9d43-0a8f5f3b1c11",
        "order": {**ORDER_EXAMPLE, "status": "CANCELLED",
                  "state": {"code": "CANCELLED", "label": "Commande annulée", "updated_at": None}},
        "result": {"cancellation": {"time": "2026-11-23T14:06:00.000Z", "cancelled_by": "CONSUMER",
                                    "reason": {"id": "002", "name": "Commande passée par erreur"},
                                    "comment": None, "fee": {"currency": "EUR", "value": "0.00"},
                                    "fee_percent": "0", "refunded": None}},
        "error": None}]}}


class CancelIn(BaseModel):
    reason_id: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9A-Za-z_-]{1,16}$")] = Field(
        description="One of GET /cancellation-reasons.", examples=["002"])
    comment: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None
    wait_ms: WaitMs = 5000

    model_config = {"json_schema_extra": {"examples": [{"reason_id": "002", "comment": "Erreur de quantité"}]}}


class CancellationReason(BaseModel):
    id: str
    name: str


class CancellationReasonsOut(BaseModel):
    lang: str
    reasons: list[CancellationReason]

    model_config = {"json_schema_extra": {"examples": [{"lang": "fr", "reasons": [
        {"id": "001", "name": "Je ne souhaite plus cette commande"},
        {"id": "002", "name": "Commande passée par erreur"}]}]}}


class WaitOnly(BaseModel):
    wait_ms: WaitMs = 5000

    model_config = {"json_schema_extra": {"examples": [{"wait_ms": 5000}]}}


class RatingIn(BaseModel):
    category: Literal["order", "item", "provider", "fulfillment"]
    id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = Field(
        None, description="The rated thing's id; default: the order's, its provider's or its fulfillment's "
        "(required for an item).")
    value: int = Field(ge=1, le=5, description="Stars, 1 to 5.")


class RatingsIn(BaseModel):
    ratings: list[RatingIn] = Field(min_length=1, max_length=50)
    wait_ms: WaitMs = 5000

    model_config = {"json_schema_extra": {"examples": [{"ratings": [
        {"category": "order", "value": 5}, {"category": "item", "id": "ananas-victoria", "value": 4}]}]}}


class BillingPatch(BaseModel):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = None
    phone: Phone | None = None
    email: Email | None = None
    address: Line | None = None

    @model_validator(mode="after")
    def _something(self) -> BillingPatch:
        if not any(getattr(self, name) for name in ("name", "phone", "email", "address")):
            raise ValueError("give at least one of name, phone, email, address")
        return self


class DeliveryPatch(BaseModel):
    address: Line
    gps: Gps | None = Field(None, description="\"lat, lon\" of the new drop-off (the merchant checks its "
                            "delivery zone).", examples=["14.6160, -61.0590"])


class OrderPatchIn(BaseModel):
    billing: BillingPatch | None = Field(None, description="The fields given replace those of the order.")
    delivery: DeliveryPatch | None = Field(None, description="A delivery's new drop-off (until it is out "
                                           "for delivery).")
    wait_ms: WaitMs = 5000

    @model_validator(mode="after")
    def _something(self) -> OrderPatchIn:
        if self.billing is None and self.delivery is None:
            raise ValueError("give billing and/or delivery")
        return self

    model_config = {"json_schema_extra": {"examples": [
        {"billing": {"phone": "+596696112233"}},
        {"delivery": {"address": "12 rue Victor Hugo, 97200 Fort-de-France", "gps": "14.6050, -61.0700"}},
    ]}}
