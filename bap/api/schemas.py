"""Request and response bodies of the citizen-app API (`/api/v1`)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator, model_validator

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


_GPS = re.compile(r"^\s*([-+]?\d{1,2}(?:\.\d{1,10})?)\s*,\s*([-+]?\d{1,3}(?:\.\d{1,10})?)\s*$")
MAX_RADIUS_KM = Decimal(100)


class NearIn(BaseModel):
    """A circle around a point: the citizen's position, or a place they chose on a map."""

    gps: str = Field(description="Centre as \"latitude, longitude\" in decimal degrees (WGS 84).",
                     examples=["14.6160, -61.0588"], max_length=60)
    radius_km: str = Field(description="Radius in kilometres, a decimal string above 0, at most 100.",
                           examples=["5"], max_length=20)

    @field_validator("radius_km", mode="before")
    @classmethod
    def _number_as_text(cls, value: Any) -> Any:
        # Apps often send 5 or 2.5 as JSON numbers; take them as the decimal they write.
        return str(value) if type(value) in (int, float) else value

    @field_validator("gps")
    @classmethod
    def _gps(cls, value: str) -> str:
        match = _GPS.match(value)
        if match is None:
            raise ValueError('must be "latitude, longitude" in decimal degrees, like "14.6160, -61.0588"')
        latitude, longitude = Decimal(match[1]), Decimal(match[2])
        if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
            raise ValueError("latitude must be within -90..90 and longitude within -180..180")
        # Written as Beckn's Gps pattern wants it: no leading zeros, ", " between the two.
        return f"{format(latitude, 'f')}, {format(longitude, 'f')}"

    @field_validator("radius_km")
    @classmethod
    def _radius(cls, value: str) -> str:
        try:
            radius = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError("must be a decimal number of kilometres, like \"5\" or \"2.5\"") from None
        if not radius.is_finite() or radius <= 0 or radius > MAX_RADIUS_KM:
            raise ValueError(f"must be above 0 and at most {MAX_RADIUS_KM} km")
        return format(radius.normalize(), "f")


class SearchIn(BaseModel):
    query: Text | None = Field(None, description="What the citizen looks for, e.g. \"ananas\". Optional when "
                               "`category`, `near` or `city` narrow the search.")
    lang: Literal["fr", "en", "es", "de"] | None = Field(
        None, description="The language BPPs answer in. Default: the request's Accept-Language, else fr.")
    city: str | None = Field(None, pattern=r"^insee:\d{5}$",
                             description="Commune as \"insee:<INSEE code>\", e.g. insee:97209. Default: the node's "
                             "(with `near`: the whole territory, the circle narrows the search).")
    country: str | None = Field(None, pattern=r"^[A-Z]{2,3}$",
                                description="Country code of that commune (ISO 3166-1, e.g. GLP to search a partner "
                                "territory's BPPs through federation). Default: the node's.")
    category: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] | None = Field(
        None, description="A category id (\"fruits\") or a category name (\"Fruits et légumes\").")
    near: NearIn | None = Field(None, description="Only merchants with a shop within this circle; offers then carry "
                                "`distance_km` and can be sorted by distance.")
    fulfillment: Literal["pickup", "delivery"] | None = Field(
        None, description="Only merchants offering this: pickup at their shop, or delivery.")
    ttl_seconds: int = Field(10, ge=1, le=60, description="How long BPPs may answer.")

    model_config = {"json_schema_extra": {"examples": [
        {"query": "ananas", "lang": "fr", "city": "insee:97213"},
        {"category": "fruits", "near": {"gps": "14.6160, -61.0588", "radius_km": "5"}, "fulfillment": "pickup",
         "lang": "en"},
    ]}}

    def narrowed(self) -> bool:
        """Whether anything keeps this search from asking every merchant for everything."""
        return any(value is not None for value in (self.query, self.category, self.near, self.city))


class SearchOut(BaseModel):
    id: str = Field(description="The search's id, for .../results and .../events (= transaction_id).")
    transaction_id: str
    message_id: str
    expires_at: str = Field(description="When BPPs stop answering: the search is complete then.")

    model_config = {"json_schema_extra": {"examples": [{
        "id": "0c6f3f5e-6a53-4c55-9d4e-3b1e8d1c2f10", "transaction_id": "0c6f3f5e-6a53-4c55-9d4e-3b1e8d1c2f10",
        "message_id": "7d1b2c4a-52a9-4e0e-9c8e-0b8a1f6d7e21", "expires_at": "2026-11-23T14:30:10.000Z"}]}}


class Price(BaseModel):
    currency: str | None = None
    value: str | None = Field(None, description="A decimal string, e.g. \"4.50\".")


class OfferTag(BaseModel):
    """One Beckn tag, flattened with its group."""

    group: str | None = Field(None, examples=["lakou:origin"])
    group_name: str | None = Field(None, examples=["Origine"])
    code: str | None = Field(None, examples=["local"])
    name: str | None = Field(None, examples=["Produit péi"])
    value: str | None = Field(None, examples=["true"])


class OfferLocation(BaseModel):
    id: str | None = None
    name: str | None = None
    address: str | None = Field(None, examples=["Quartier Bois-Carré, 97232 Le Lamentin"])
    city: str | None = Field(None, examples=["insee:97213"])
    city_name: str | None = Field(None, examples=["Le Lamentin"])
    gps: str | None = Field(None, examples=["14.6097, -60.9967"])


class OfferProvider(BaseModel):
    id: str | None = None
    name: str | None = None
    city: str | None = Field(None, description="City code of the merchant's location.", examples=["insee:97222"])
    city_name: str | None = Field(None, description="Its commune's name, as the BPP sent it.", examples=["Le Robert"])
    locations: list[OfferLocation] = Field([], description="Its shops and stalls (pickup points), main shop first.")
    opening_hours: str | None = Field(None, description="The weekly opening hours for people, when the merchant "
                                      "published them.", examples=["lun.-ven. 07:30-12:30 · sam. 08:00-12:00"])
    delivery: dict[str, str] | None = Field(None, description="Delivery terms when it delivers: `radius_km`, `fee`, "
                                            "`free_above`.", examples=[{"radius_km": "8", "fee": "5.00"}])
    tags: list[OfferTag] = Field([], description="e.g. the opening hours per day (group `lakou:opening_hours`).")
    verified: bool | None = Field(None, description="Verified merchant: its business credential (group "
                                  "`verifiable-credentials`) is signed by an issuer this BAP trusts, valid, not "
                                  "revoked, and bound to the key the BPP signs with. false: no credential, or it "
                                  "failed; null: not checked yet (ask again in a moment).")
    verified_siret: str | None = Field(None, description="When verified: the SIRET the credential certifies.",
                                       examples=["94580730215736"])
    verified_name: str | None = Field(None, description="When verified: the certified legal name.")


class OfferCategory(BaseModel):
    id: str
    name: str | None = None


class OfferItem(BaseModel):
    id: str | None = None
    name: str | None = None
    description: str | None = None
    price: Price
    category_ids: list[str] = []
    categories: list[OfferCategory] = Field([], description="The item's categories with their names.")
    images: list[str] = []
    available: int | None = Field(None, description="Units in stock, when the BPP says.", examples=[40])
    unit: str | None = Field(None, description="What one unit is.", examples=["kg"])
    unit_value: str | None = Field(None, description="How much of `unit` one unit holds.", examples=["1"])
    tags: list[OfferTag] = Field([], description="e.g. `local` (produit péi) and `organic` (bio).")
    fulfillment_types: list[str] = Field([], description="How it can be had: `pickup`, `delivery`.",
                                         examples=[["pickup", "delivery"]])
    payment_types: list[str] = Field([], description="How it can be paid: `on_fulfillment` (at pickup or delivery), "
                                     "`prepay` (online, by payment link).", examples=[["on_fulfillment"]])


class Offer(BaseModel):
    bpp_id: str
    bpp_uri: str | None = None
    provider: OfferProvider
    item: OfferItem
    distance_km: float | None = Field(None, description="From the search's `near` centre to the provider's nearest "
                                      "location (great-circle), when the search had `near`.", examples=[2.418])


class ResultsOut(BaseModel):
    id: str = Field(description="The search's id.")
    transaction_id: str
    message_id: str
    complete: bool = Field(description="True once the search's ttl has passed: no more offers will come.")
    expires_at: str | None = None
    cursor: str = Field(description="Pass as `after` to wait for callbacks newer than these results.")
    responses: int = Field(description="How many on_search callbacks were accepted (a BPP may answer in parts).")
    total: int = Field(description="Offers in all, after deduplication (one per BPP, provider and item).")
    page: int
    page_size: int
    offers: list[Offer] = Field(description="This page of the offers, sorted as asked.")

    model_config = {"json_schema_extra": {"examples": [{
        "id": "0c6f3f5e-6a53-4c55-9d4e-3b1e8d1c2f10", "transaction_id": "0c6f3f5e-6a53-4c55-9d4e-3b1e8d1c2f10",
        "message_id": "7d1b2c4a-52a9-4e0e-9c8e-0b8a1f6d7e21", "complete": False,
        "expires_at": "2026-11-23T14:30:10.000Z", "cursor": "42", "responses": 2, "total": 1, "page": 1,
        "page_size": 20,
        "offers": [{
            "bpp_id": "bpp.lakou.mq", "bpp_uri": "https://bpp.lakou.mq/beckn",
            "provider": {"id": "jardin-lamentin", "name": "Jardin Créole du Lamentin", "city": "insee:97213",
                         "city_name": "Le Lamentin",
                         "locations": [{"id": "bois-carre", "name": None,
                                        "address": "Quartier Bois-Carré, 97232 Le Lamentin",
                                        "city": "insee:97213", "city_name": "Le Lamentin",
                                        "gps": "14.6135, -60.9996"}],
                         "opening_hours": "lun.-ven. 07:30-12:30",
                         "delivery": {"radius_km": "12", "fee": "4.00", "free_above": "40.00"},
                         "tags": [{"group": "lakou:opening_hours", "group_name": "Horaires d'ouverture",
                                   "code": "mon", "name": "lun.", "value": "07:30-12:30"}]},
            "item": {"id": "christophine", "name": "Christophine", "description": "Christophine verte, au kilo",
                     "price": {"currency": "EUR", "value": "2.80"}, "category_ids": ["legumes"],
                     "categories": [{"id": "legumes", "name": "Légumes"}], "images": [],
                     "available": 40, "unit": "kg", "unit_value": "1",
                     "tags": [{"group": "lakou:origin", "group_name": "Origine", "code": "local",
                               "name": "Produit péi", "value": "true"}],
                     "fulfillment_types": ["pickup", "delivery"], "payment_types": ["on_fulfillment"]},
            "distance_km": 2.418,
        }],
    }]}}


class SelectItem(BaseModel):
    id: Id
    quantity: int = Field(ge=1, le=10000)


class SelectIn(BaseModel):
    bpp_id: Id
    provider_id: Id
    items: list[SelectItem] = Field(min_length=1, max_length=100)
    wait_ms: WaitMs = 5000

    model_config = {"json_schema_extra": {"examples": [{
        "bpp_id": "bpp.lakou.localhost", "provider_id": "jardin-lamentin",
        "items": [{"id": "igname-kg", "quantity": 2}], "wait_ms": 5000}]}}

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

    model_config = {"json_schema_extra": {"examples": [{
        "billing": {"name": "Léa Joseph", "phone": "+596696123456", "email": "lea@example.mq"},
        "fulfillment": {"type": "pickup"}, "wait_ms": 5000}]}}

    @model_validator(mode="after")
    def _delivery_needs_address(self) -> InitIn:
        if self.fulfillment.type == "delivery" and not (self.fulfillment.address or self.billing.address):
            raise ValueError("a delivery needs an address: give fulfillment.address (or billing.address)")
        return self


class WaitIn(BaseModel):
    wait_ms: WaitMs = 5000

    model_config = {"json_schema_extra": {"examples": [{"wait_ms": 5000}]}}


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
