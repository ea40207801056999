"""Request and response bodies of the cart and checkout API (`/api/v1/carts`), with examples."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from bap.api.schemas import BillingIn

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Address = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
WaitMs = Annotated[int, Field(ge=0, le=30000, description="How long to wait for the merchant's answer, in ms; "
                              "0 answers at once (202 while it is pending).")]
GPS = r"^-?[0-9]{1,2}(\.[0-9]{1,8})?, ?-?[0-9]{1,3}(\.[0-9]{1,8})?$"
AMOUNT = r"^[0-9]{1,9}(\.[0-9]{1,2})?$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CartItemIn(_Strict):
    id: Id = Field(description="An offer's `item.id` from the search results.", examples=["igname-kg"])
    quantity: int = Field(ge=1, le=10000, examples=[2])


class CartItemChange(_Strict):
    id: Id = Field(examples=["igname-kg"])
    quantity: int = Field(ge=0, le=10000, description="The new quantity; 0 removes the item.", examples=[3])


def _distinct(items: list[Any]) -> None:
    ids = [item.id for item in items]
    if len(ids) != len(set(ids)):
        raise ValueError("each item id may appear once; add up the quantities instead")


class CartIn(_Strict):
    search_id: Id = Field(description="The search the offers came from (`POST /searches` → `id`).")
    bpp_id: Id = Field(description="The offer's `bpp_id`.", examples=["bpp.lakou.localhost"])
    provider_id: Id = Field(description="The offer's `provider.id`: a cart holds items of one provider.",
                            examples=["jardin-lamentin"])
    items: list[CartItemIn] = Field(min_length=1, max_length=100)
    wait_ms: WaitMs = 5000

    @model_validator(mode="after")
    def _unique(self) -> CartIn:
        _distinct(self.items)
        return self

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "search_id": "6f1c2d1e-0d7b-4a57-9d0a-2f5b8f0c9e11", "bpp_id": "bpp.lakou.localhost",
        "provider_id": "jardin-lamentin",
        "items": [{"id": "igname-kg", "quantity": 2}, {"id": "christophine-kg", "quantity": 1}],
        "wait_ms": 5000,
    }]})


class CartItemsIn(_Strict):
    items: list[CartItemChange] = Field(min_length=1, max_length=100, description=(
        "Changes to the cart's lines: a listed item gets that quantity (0 removes it, a new id adds it); "
        "items not listed keep theirs."))
    wait_ms: WaitMs = 5000

    @model_validator(mode="after")
    def _unique(self) -> CartItemsIn:
        _distinct(self.items)
        return self

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "items": [{"id": "igname-kg", "quantity": 3}, {"id": "christophine-kg", "quantity": 0}], "wait_ms": 5000,
    }]})


class CheckoutFulfillmentIn(_Strict):
    type: Literal["pickup", "delivery"] = Field(description="One of the cart's `fulfillment_options`.")
    location_id: Id | None = Field(None, description="pickup: the pickup point, one of the pickup option's "
                                   "`locations[].id` (default: the merchant's main shop).",
                                   examples=["jardin-lamentin-grand-marche"])
    address: Address | None = Field(None, description="delivery: where to deliver (default: billing.address).",
                                    examples=["12 rue Victor Hugo, 97200 Fort-de-France"])
    gps: str | None = Field(None, pattern=GPS, description="delivery: the drop-off point \"lat, lon\"; required "
                            "when the delivery option has a zone (`needs_gps`).", examples=["14.6050, -61.0680"])


class CheckoutPaymentIn(_Strict):
    type: Literal["on_fulfillment", "prepay"] = Field(description=(
        "on_fulfillment: pay the merchant at pickup or on delivery; prepay: pay online now through the "
        "merchant's payment link (`payment.url` in the answer), before ordering."))


class CheckoutIn(_Strict):
    billing: BillingIn = Field(description="The citizen's details: sent only to this cart's merchant.")
    fulfillment: CheckoutFulfillmentIn
    payment: CheckoutPaymentIn | None = Field(None, description="Default: the merchant's first payment option.")
    offer_id: str | None = Field(None, max_length=200, description="An offer of the merchant (the search's "
                                 "`offers`), e.g. a residents' discount `residents-<merchant>`.")
    resident_presentation: str | None = Field(
        None, max_length=20000, description="For an offer that requires a credential: the SD-JWT VC "
        "presentation the citizen's wallet made for aud = the cart's merchant (bpp_id) and nonce = the cart id. "
        "Sent to this merchant only, at checkout and again with the order.")
    wait_ms: WaitMs = 5000

    @model_validator(mode="after")
    def _delivery_needs_address(self) -> CheckoutIn:
        if self.fulfillment.type == "delivery" and not (self.fulfillment.address or self.billing.address):
            raise ValueError("a delivery needs an address: give fulfillment.address (or billing.address)")
        if self.fulfillment.type == "pickup" and (self.fulfillment.address or self.fulfillment.gps):
            raise ValueError("address and gps are for a delivery; a pickup takes location_id")
        if self.fulfillment.type == "delivery" and self.fulfillment.location_id:
            raise ValueError("location_id is the pickup point; a delivery takes address and gps")
        return self

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"billing": {"name": "Léa Joseph", "phone": "+596696123456", "email": "lea@example.mq"},
         "fulfillment": {"type": "pickup", "location_id": "jardin-lamentin-grand-marche"},
         "payment": {"type": "on_fulfillment"}},
        {"billing": {"name": "Léa Joseph", "phone": "+596696123456", "email": "lea@example.mq"},
         "fulfillment": {"type": "delivery", "address": "12 rue Victor Hugo, 97200 Fort-de-France",
                         "gps": "14.6050, -61.0680"},
         "payment": {"type": "prepay"}},
    ]})


class OrderIn(_Strict):
    accept_total: str = Field(pattern=AMOUNT, description=(
        "The checkout's `quote.total.value` the citizen agreed to. The order is placed only if the "
        "merchant's total is still exactly this; otherwise 409 `price_changed` with the current quote."),
        examples=["12.40"])
    wait_ms: WaitMs = 5000

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"accept_total": "12.40"}]})


# ------------------------------------------------------------------------------ answers


class Money(BaseModel):
    currency: str | None = Field(None, examples=["EUR"])
    value: str | None = Field(None, examples=["8.40"])


class QuoteLine(BaseModel):
    kind: Literal["item", "delivery", "cancellation_fee", "other"]
    item_id: str | None = None
    title: str | None = Field(None, examples=["Igname × 2"])
    quantity: int | None = None
    unit_price: Money | None = None
    price: Money | None = None


class Quote(BaseModel):
    id: str | None = None
    total: Money | None = None
    breakup: list[QuoteLine] = []
    ttl: str | None = Field(None, description="How long the merchant holds this quote (ISO 8601).", examples=["PT15M"])


class CartLine(BaseModel):
    id: str
    name: str | None = Field(None, examples=["Igname"])
    quantity: int
    unit_price: Money | None = None
    line_total: Money | None = Field(None, description="From the merchant's quote; null until it is quoted.")


class Place(BaseModel):
    id: str | None = None
    name: str | None = None
    address: str | None = None
    gps: str | None = None
    city: str | None = None


class FulfillmentOption(BaseModel):
    type: Literal["pickup", "delivery"]
    id: str | None = None
    locations: list[Place] | None = Field(None, description="pickup: where the order can be collected.")
    radius_km: str | None = Field(None, description="delivery: the zone, in km around the shop.", examples=["12"])
    fee: Money | None = Field(None, description="delivery: the fee (added to the quote at checkout).")
    free_above: Money | None = Field(None, description="delivery: no fee from this items total on.")
    needs_gps: bool | None = Field(None, description="delivery: give `fulfillment.gps` at checkout.")


class PaymentOption(BaseModel):
    type: Literal["on_fulfillment", "prepay"]
    id: str | None = None
    collected_by: str | None = None


class CancellationTerm(BaseModel):
    state: str | None = Field(None, description="The order state in which this applies.", examples=["RECEIVED"])
    fee_percent: str | None = Field(None, description="Share of the total the merchant keeps.", examples=["0"])
    fee: Money | None = None
    reason_required: bool = True


class CancellationTerms(BaseModel):
    terms: list[CancellationTerm] = Field(description="When the citizen may cancel; a state not listed cannot be.")
    raw: list[dict[str, Any]] = Field(description="The merchant's Beckn CancellationTerms, as sent.")


class ReturnTerms(BaseModel):
    returnable: bool | None = None
    within_days: int | None = None
    managed_by: str | None = Field(None, description="CONSUMER: bring it back; PROVIDER: the merchant collects.")
    raw: list[dict[str, Any]] = []


class PaymentOut(BaseModel):
    type: str | None = Field(None, examples=["prepay"])
    status: str | None = Field(None, description="not_paid | paid", examples=["not_paid"])
    amount: Money | None = None
    url: str | None = Field(None, description="prepay: where the citizen pays, before ordering.")
    reference: str | None = Field(None, description="The merchant's payment reference.")


class ChosenFulfillment(BaseModel):
    type: str | None = None
    id: str | None = None
    pickup: Place | None = None
    delivery: dict[str, Any] | None = None


class CheckoutOut(BaseModel):
    """What the citizen will pay, exactly as the merchant stated it: show it, then order with
    `accept_total` = `quote.total.value`."""

    cart_id: str
    status: str | None = Field(None, examples=["checked_out"])
    quote: Quote | None = None
    payment: PaymentOut | None = None
    fulfillment: ChosenFulfillment | None = None
    cancellation_terms: CancellationTerms
    return_terms: ReturnTerms
    billing: dict[str, Any] | None = None


class Pending(BaseModel):
    action: str = Field(examples=["select"])
    message_id: str
    expires_at: str | None = None


class CartProvider(BaseModel):
    id: str | None = None
    name: str | None = None
    locations: list[Place] = []


class CartOut(BaseModel):
    """A cart. `status`: quoting (waiting for the merchant's quote) → quoted → checking_out →
    checked_out → ordering → ordered; `error` when the newest request failed (the cart keeps its
    earlier valid state: a failed checkout leaves it quoted, a failed order checked out)."""

    model_config = ConfigDict(extra="allow")

    id: str
    search_id: str | None = None
    bpp_id: str | None = None
    provider: CartProvider
    status: Literal["quoting", "quoted", "error", "checking_out", "checked_out", "ordering", "ordered"]
    items: list[CartLine]
    quote: Quote | None = Field(None, description="The merchant's latest valid quote; null while quoting or "
                                "after a failed change of items.")
    fulfillment_options: list[FulfillmentOption]
    payment_options: list[PaymentOption]
    cancellation_terms: CancellationTerms
    return_terms: ReturnTerms
    checkout: CheckoutOut | None = Field(None, description="Once checked out: what the citizen will pay.")
    order_id: str | None = Field(None, description="The merchant's order id, once ordered.")
    error: dict[str, Any] | None = Field(None, description="Why the newest request failed: `code` (the merchant's "
                                         "Beckn code, or timeout/bpp_unreachable), `message` for the citizen, "
                                         "`detail` the merchant's own words.")
    pending: Pending | None = Field(None, description="The request still waiting for an answer.")
    lang: str | None = None


class CartErrorOut(BaseModel):
    """A refusal by the merchant (or no answer), with the cart as it now stands."""

    error: dict[str, Any] = Field(examples=[{"code": "40002", "message": "Stock insuffisant pour cet article.",
                                             "detail": "only 30 of item 'dachine-kg' available, 50 requested",
                                             "source": "bpp"}])
    cart: CartOut | None = None


__all__ = ["CartErrorOut", "CartIn", "CartItemsIn", "CartOut", "CheckoutIn", "CheckoutOut", "OrderIn"]
