"""Request and response bodies of the citizen-app API (`/api/v1`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, model_validator

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
WaitMs = Annotated[int, Field(ge=0, le=30000, description="How long to wait for the BPP's answer, in ms.")]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class SessionOut(BaseModel):
    token: str = Field(description="Bearer token for every other /api/v1 call.")
    expires_at: str


class SearchIn(BaseModel):
    query: Text = Field(description="What the citizen looks for, e.g. \"ananas\".")
    lang: Literal["fr", "en", "es", "de"] = "fr"
    city: str | None = Field(None, pattern=r"^insee:\d{5}$",
                             description="Commune as \"insee:<INSEE code>\", e.g. insee:97209. Default: the node's.")
    country: str | None = Field(None, pattern=r"^[A-Z]{2,3}$",
                                description="Country code of that commune (ISO 3166-1, e.g. GLP to search a partner "
                                "territory's BPPs through federation). Default: the node's.")
    category: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] | None = None
    ttl_seconds: int = Field(10, ge=1, le=60, description="How long BPPs may answer.")

    model_config = {"json_schema_extra": {"examples": [{"query": "ananas", "lang": "fr", "city": "insee:97213"}]}}


class SearchOut(BaseModel):
    transaction_id: str
    message_id: str
    expires_at: str


class Price(BaseModel):
    currency: str | None = None
    value: str | None = None


class OfferProvider(BaseModel):
    id: str | None = None
    name: str | None = None
    city: str | None = Field(None, description="City code of the merchant's location.", examples=["insee:97222"])
    city_name: str | None = Field(None, description="Its commune's name, as the BPP sent it.", examples=["Le Robert"])


class OfferItem(BaseModel):
    id: str | None = None
    name: str | None = None
    description: str | None = None
    price: Price
    category_ids: list[str] = []
    images: list[str] = []


class Offer(BaseModel):
    bpp_id: str
    bpp_uri: str | None = None
    provider: OfferProvider
    item: OfferItem


class ResultsOut(BaseModel):
    transaction_id: str
    message_id: str
    complete: bool = Field(description="True once the search's ttl has passed: no more offers will come.")
    expires_at: str | None = None
    cursor: str = Field(description="Pass as `after` to wait for callbacks newer than these results.")
    responses: int = Field(description="How many BPPs answered (on_search callbacks).")
    offers: list[Offer]


class SelectItem(BaseModel):
    id: Id
    quantity: int = Field(ge=1, le=10000)


class SelectIn(BaseModel):
    bpp_id: Id
    provider_id: Id
    items: list[SelectItem] = Field(min_length=1, max_length=100)
    wait_ms: WaitMs = 5000

    @model_validator(mode="after")
    def _distinct(self) -> SelectIn:
        ids = [item.id for item in self.items]
        if len(ids) != len(set(ids)):
            raise ValueError("each item id may appear once; add up the quantities instead")
        return self


class BillingIn(BaseModel):
    name: Text
    phone: str = Field(pattern=r"^\+?[0-9][0-9 .()-]{3,24}$", description="e.g. +596696123456")
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)
    address: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)] | None = None


class FulfillmentIn(BaseModel):
    type: Literal["pickup", "delivery"]
    address: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)] | None = None


class InitIn(BaseModel):
    billing: BillingIn
    fulfillment: FulfillmentIn
    wait_ms: WaitMs = 5000

    @model_validator(mode="after")
    def _delivery_needs_address(self) -> InitIn:
        if self.fulfillment.type == "delivery" and not (self.fulfillment.address or self.billing.address):
            raise ValueError("a delivery needs an address: give fulfillment.address (or billing.address)")
        return self


class WaitIn(BaseModel):
    wait_ms: WaitMs = 5000


class ActionOut(BaseModel):
    """The BPP's answer to select/init/confirm/status (200), or its error (422)."""

    model_config = {"extra": "allow"}

    action: str
    message_id: str
    status: str = Field(description="answered | error | pending | failed | expired")
    quote: dict[str, Any] | None = None
    order: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class PendingOut(BaseModel):
    action: str
    message_id: str
    status: Literal["pending"]
    expires_at: str | None = None
