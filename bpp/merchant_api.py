"""The merchant API: operators create merchant accounts, merchants manage their shops' catalogue.

- `/api/v1/admin/merchants...` (bearer LAKOU_BPP_ADMIN_TOKEN): create a merchant (its first API
  key is in the answer, shown once), issue more keys (rotation), list and revoke them.
- `/api/v1/merchant/...` (a merchant API key): the merchant's providers (profile: name in four
  languages, SIRET, address, commune, GPS, opening hours, contact), their categories and items.

Every write goes straight to the catalogue tables that Beckn search reads, so a change is in the
next `on_search`. Isolation: a merchant only ever sees its own providers; another merchant's
provider answers 404 exactly like one that does not exist. Providers seeded from a catalogue
file (the demo) have no owner and are managed by the operator only.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Depends, HTTPException, Path, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import (AnyHttpUrl, BaseModel, ConfigDict, Field, StrictInt, StringConstraints, field_validator,
                      model_validator)
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from beckn.models.base import Gps
from beckn.node import wire_timestamp
from bpp import merchants
from bpp.catalogue import (
    CategoryFile,
    CityFile,
    ItemTag,
    LocationFile,
    ProviderFile,
    TextFile,
    item_search_text,
    money,
    provider_rows,
    unique_tags,
)
from bpp.fulfilment import DELIVERY_KEY, DeliveryTerms
from bpp.offers import discount_percent
from bpp.settings import BppSettings
from bpp.terms import (
    CancellationTerm,
    PaymentType,
    ReturnTerms,
    cancellation_terms_of,
    payment_types_of,
    return_terms_of,
    unique_payment_types,
    unique_states,
)
from bpp.tables import BppItem, BppMerchant, BppProvider, BppProviderProfile
from bpp.text import DEFAULT_LANGUAGE, LANGUAGES

log = structlog.get_logger(__name__)

Id = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
IdPath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
# A Beckn DecimalValue in euros with cents: "4.50", not "4.5" nor "4,50".
Price = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,9}\.[0-9]{2}$")]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_TIME = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _languages(value: dict[str, TextFile]) -> dict[str, TextFile]:
    unknown = set(value) - set(LANGUAGES)
    if unknown:
        raise ValueError(f"unknown language(s) {sorted(unknown)}; use {', '.join(LANGUAGES)}")
    if DEFAULT_LANGUAGE not in value:
        raise ValueError(f"a {DEFAULT_LANGUAGE!r} text is required (the network's default language)")
    return value


Descriptor = Annotated[dict[str, TextFile], Field(
    description='Texts by language: "fr" required, "en", "es", "de" optional.',
    examples=[{"fr": {"name": "Jardin du Lamentin"}, "en": {"name": "Lamentin garden"}}])]


def siret_ok(siret: str) -> bool:
    """14 digits with a valid Luhn checksum (INSEE's rule). La Poste's many establishments (SIREN
    356000000) outgrew it: theirs may instead have digits adding up to a multiple of 5."""
    if not re.fullmatch(r"[0-9]{14}", siret):
        return False
    total = 0
    for position, char in enumerate(reversed(siret)):
        digit = int(char) * (2 if position % 2 else 1)
        total += digit - 9 if digit > 9 else digit
    if total % 10 == 0:
        return True
    return siret.startswith("356000000") and sum(map(int, siret)) % 5 == 0


class OpeningHours(_Strict):
    days: list[Day] = Field(min_length=1, examples=[["mon", "tue", "wed", "thu", "fri"]])
    opens: str = Field(pattern=_TIME, examples=["07:30"])
    closes: str = Field(pattern=_TIME, examples=["12:30"])

    @model_validator(mode="after")
    def _order(self) -> OpeningHours:
        if self.opens >= self.closes:
            raise ValueError(f"opens ({self.opens}) must be before closes ({self.closes})")
        if len(set(self.days)) != len(self.days):
            raise ValueError("days must not repeat")
        return self


class Contact(_Strict):
    """The shop's business contact (not shown in Beckn search)."""

    phone: str | None = Field(None, pattern=r"^\+?[0-9][0-9 ]{5,19}$", examples=["+596 596 12 34 56"])
    email: str | None = Field(None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
                              examples=["contact@jardin-lamentin.mq"])
    url: str | None = Field(None, max_length=500, pattern=r"^https://[^\s]+$",
                            description="A support page, https only.", examples=["https://jardin-lamentin.mq/aide"])

    @model_validator(mode="after")
    def _something(self) -> Contact:
        if not self.phone and not self.email:
            raise ValueError("give a phone or an email")
        return self


class OtherLocationIn(_Strict):
    """Another shop or pickup point of the provider (its main shop is the profile's address)."""

    id: Id = Field(examples=["jardin-lamentin-marche"])
    address: str = Field(min_length=1, max_length=200, examples=["Marché de Fort-de-France, stand 12"])
    commune: CityFile = Field(description='INSEE commune, e.g. {"code": "insee:97209", "name": "Fort-de-France"}.')
    postal_code: str = Field(pattern=r"^97[1-46][0-9]{2}$", examples=["97200"])
    gps: Gps = Field(examples=["14.6040, -61.0680"])


class ProfileIn(_Strict):
    descriptor: Descriptor
    siret: str = Field(description="14 digits, Luhn-checked.", examples=["73282932000074"])
    address: str = Field(min_length=1, max_length=200, examples=["Marché couvert, rue Schoelcher"])
    commune: CityFile = Field(description='INSEE commune, e.g. {"code": "insee:97213", "name": "Le Lamentin"}.')
    postal_code: str = Field(pattern=r"^97[1-46][0-9]{2}$", examples=["97232"])
    gps: Gps = Field(examples=["14.6097, -60.9967"])
    opening_hours: list[OpeningHours] = Field(default_factory=list, max_length=21)
    contact: Contact
    fulfillment_types: list[Literal["Self-Pickup", "Delivery"]] = Field(
        default_factory=lambda: ["Self-Pickup"], min_length=1)
    delivery: DeliveryTerms | None = Field(None, description="Delivery zone and fee; needs 'Delivery' above.")
    other_locations: list[OtherLocationIn] = Field(
        default_factory=list, max_length=20,
        description="More shops or pickup points; the main shop (address above) is measured from for delivery.")
    payment_types: list[PaymentType] | None = Field(
        None, min_length=1, examples=[["ON-FULFILLMENT", "PRE-ORDER"]],
        description="ON-FULFILLMENT: pay at pickup or delivery; PRE-ORDER: prepay online by payment link. "
        "Unset: ON-FULFILLMENT only.")
    cancellation_terms: list[CancellationTerm] | None = Field(
        None, examples=[[{"state": "RECEIVED", "fee_percent": "0"}, {"state": "PACKED", "fee_percent": "20"}]],
        description="States in which a buyer may cancel, each with the fee kept (percent of the total); an "
        "unlisted state cannot be cancelled. Unset: free while RECEIVED, then not at all.")
    return_terms: ReturnTerms | None = Field(
        None, examples=[{"returnable": True, "within_days": 14, "managed_by": "CONSUMER"}],
        description="Whether completed orders may be returned, and within how many days. Unset: no returns.")
    resident_discount_percent: StrictInt | None = Field(  # strict: true is not 1 %
        None, ge=1, le=90, examples=[10],
        description="A residents' discount in percent (1 to 90) on every order of a buyer presenting a Martinique "
        "resident credential (Martinique Connect), listed as an Offer in on_search. Unset or null: none.")
    _langs = field_validator("descriptor")(_languages)
    _payment_types = field_validator("payment_types")(lambda value: value and unique_payment_types(value))
    _states = field_validator("cancellation_terms")(lambda value: value and unique_states(value))

    @model_validator(mode="after")
    def _delivery_needs_the_type(self) -> ProfileIn:
        if self.delivery is not None and "Delivery" not in self.fulfillment_types:
            raise ValueError("delivery terms are given but 'Delivery' is not in fulfillment_types")
        return self

    @field_validator("siret")
    @classmethod
    def _siret(cls, value: str) -> str:
        value = value.replace(" ", "")
        if not siret_ok(value):
            raise ValueError("not a valid SIRET: 14 digits with a correct check digit (Luhn)")
        return value


class ProviderIn(ProfileIn):
    id: Id = Field(description="The provider id in Beckn catalogues; unique on this BPP.",
                   examples=["jardin-lamentin"])


class ProviderOut(BaseModel):
    id: str
    descriptor: dict[str, dict[str, Any]]
    siret: str
    address: str
    commune: dict[str, str]
    postal_code: str
    gps: str
    opening_hours: list[dict[str, Any]]
    contact: dict[str, Any]
    fulfillment_types: list[str]
    delivery: dict[str, str] | None = None
    other_locations: list[dict[str, Any]] = []
    payment_types: list[str]
    cancellation_terms: list[dict[str, Any]]
    return_terms: dict[str, Any]
    resident_discount_percent: int | None = None
    categories: list[dict[str, Any]]
    updated_at: str


class CategoryIn(_Strict):
    descriptor: Descriptor
    _langs = field_validator("descriptor")(_languages)


class ItemIn(_Strict):
    descriptor: Descriptor
    category_ids: list[Id] = []
    price: Price = Field(description='EUR as a Beckn decimal string with cents: "4.50".', examples=["4.50"])
    currency: Literal["EUR"] = "EUR"
    unit: str = Field(min_length=1, max_length=32, examples=["kilogram"])
    unit_value: str = Field("1", pattern=r"^[0-9]{1,6}(\.[0-9]{1,3})?$", examples=["1"])
    stock: int = Field(ge=0, le=1_000_000_000)
    images: list[AnyHttpUrl] = Field(default_factory=list, max_length=10,
                                     description="https URLs only.")
    tags: list[ItemTag] = Field(default_factory=list, max_length=2, examples=[["local", "organic"]],
                                description='"local" (produit péi) and/or "organic" (bio).')
    _langs = field_validator("descriptor")(_languages)
    _tags = field_validator("tags")(unique_tags)

    @field_validator("images")
    @classmethod
    def _https(cls, value: list[AnyHttpUrl]) -> list[AnyHttpUrl]:
        for url in value:
            if url.scheme != "https":
                raise ValueError(f"image URL {str(url)!r} must use https")
        return value


class ItemPatch(_Strict):
    """A price or stock change, the everyday edit."""

    price: Price | None = Field(None, examples=["4.20"])
    stock: int | None = Field(None, ge=0, le=1_000_000_000)

    @model_validator(mode="after")
    def _something(self) -> ItemPatch:
        if self.price is None and self.stock is None:
            raise ValueError("give a price, a stock or both")
        return self


class ItemOut(BaseModel):
    id: str
    descriptor: dict[str, dict[str, Any]]
    category_ids: list[str]
    price: str
    currency: str
    unit: str
    unit_value: str
    stock: int
    images: list[str]
    tags: list[str] = []
    updated_at: str


class MerchantIn(_Strict):
    name: str = Field(min_length=1, max_length=200, examples=["Jardin du Lamentin SARL"])


class KeyOut(BaseModel):
    key_id: str
    api_key: str = Field(description="The whole key. Shown this once: only its hash is kept.")


class MerchantCreated(KeyOut):
    id: str
    name: str


class KeyInfo(BaseModel):
    key_id: str
    created_at: str


class MerchantView(BaseModel):
    id: str
    name: str
    providers: list[str]


# ------------------------------------------------------------------------------ rows <-> views


def _now() -> datetime:
    return datetime.now(UTC)


def _invalid(field: str, message: str) -> HTTPException:
    # Shaped like FastAPI's own validation errors, so clients read one format.
    return HTTPException(422, [{"loc": ["body", field], "msg": message, "type": "value_error"}])


def _provider_row(provider_id: str, profile: ProfileIn, categories: list[dict[str, Any]]) -> BppProvider:
    """The catalogue row, built by the same code that seeds catalogue files (`provider_rows`)."""
    main_id = f"{provider_id}-shop"[:64]
    # Checked here, not left to ProviderFile: its error would be a 500, and the main shop's id is made here.
    ids = [main_id, *(other.id for other in profile.other_locations)]
    twice = next((location_id for location_id in ids if ids.count(location_id) > 1), None)
    if twice is not None:
        raise _invalid("other_locations", f"location id {twice!r} is used twice (the main shop's is {main_id!r}); "
                                          "give each location its own id")
    file = ProviderFile(
        id=provider_id,
        descriptor=profile.descriptor,
        location=LocationFile(id=main_id, gps=profile.gps, address=profile.address,
                              city=profile.commune, area_code=profile.postal_code),
        fulfillment_types=list(profile.fulfillment_types),
        delivery=profile.delivery,
        other_locations=[LocationFile(id=other.id, gps=other.gps, address=other.address, city=other.commune,
                                      area_code=other.postal_code) for other in profile.other_locations],
        payment_types=profile.payment_types,
        cancellation_terms=profile.cancellation_terms,
        return_terms=profile.return_terms,
        resident_discount_percent=profile.resident_discount_percent,
        categories=[CategoryFile.model_validate(c) for c in categories],
    )
    return provider_rows(file)[0]


def _provider_out(provider: BppProvider, profile: BppProviderProfile) -> ProviderOut:
    location = provider.location
    return ProviderOut(
        id=provider.id, descriptor=provider.descriptor, siret=profile.siret, address=location["address"],
        commune=dict(location["city"]), postal_code=location["area_code"], gps=location["gps"],
        opening_hours=profile.opening_hours, contact=profile.contact,
        fulfillment_types=provider.fulfillment_types, delivery=location.get(DELIVERY_KEY),
        other_locations=[{"id": other["id"], "address": other["address"], "commune": dict(other["city"]),
                          "postal_code": other["area_code"], "gps": other["gps"]}
                         for other in provider.other_locations or ()],
        payment_types=payment_types_of(provider),
        cancellation_terms=[term.model_dump() for term in cancellation_terms_of(provider)],
        return_terms=return_terms_of(provider).model_dump(exclude_none=True),
        resident_discount_percent=discount_percent(provider),
        categories=provider.categories,
        updated_at=wire_timestamp(max(provider.updated_at, profile.updated_at)),
    )


def _item_descriptor(item: ItemIn) -> dict[str, dict[str, Any]]:
    # Images ride in each language's descriptor: that is where Beckn's Descriptor has them, so the
    # catalogue's item view shows them in on_search as they are.
    images = [{"url": str(url)} for url in item.images]
    return {lang: text.model_dump(exclude_none=True) | ({"images": images} if images else {})
            for lang, text in item.descriptor.items()}


def _item_out(item: BppItem) -> ItemOut:
    first = item.descriptor.get(DEFAULT_LANGUAGE) or next(iter(item.descriptor.values()), {})
    return ItemOut(
        id=item.id, descriptor=item.descriptor, category_ids=item.category_ids, price=money(item.price),
        currency=item.currency, unit=item.unit, unit_value=item.unit_value, stock=item.stock,
        images=[image["url"] for image in first.get("images", [])], tags=item.tags or [],
        updated_at=wire_timestamp(item.updated_at),
    )


async def _owned(session: AsyncSession, merchant_id: str, provider_id: str, *,
                 lock: bool = False) -> tuple[BppProvider, BppProviderProfile]:
    """The merchant's provider, or 404: another merchant's provider looks exactly like a missing one.

    `lock` takes the provider row FOR NO KEY UPDATE (PostgreSQL; SQLite writes one at a time
    anyway), so concurrent edits of its JSON category list, or an item naming a category being
    deleted, cannot overwrite each other; "no key" lets orders referencing the provider go on."""
    profile = await session.get(BppProviderProfile, provider_id)
    provider = (await session.get(BppProvider, provider_id, with_for_update={"key_share": True} if lock else None)
                if profile is not None else None)
    if profile is None or provider is None or profile.merchant_id != merchant_id:
        raise HTTPException(404, f"provider {provider_id!r} not found")
    return provider, profile


async def _item(session: AsyncSession, provider_id: str, item_id: str) -> BppItem:
    item = await session.get(BppItem, (provider_id, item_id))
    if item is None:
        raise HTTPException(404, f"item {item_id!r} not found in provider {provider_id!r}")
    return item


def _check_categories(provider: BppProvider, category_ids: list[str]) -> None:
    missing = sorted(set(category_ids) - {c["id"] for c in provider.categories})
    if missing:
        raise _invalid("category_ids", f"unknown categories {missing} of provider {provider.id!r}; "
                                       "create them first (PUT .../categories/{id})")


async def _reindex_items(session: AsyncSession, provider: BppProvider, category_id: str) -> None:
    """Item search text includes category names: rebuild it for items of a renamed category."""
    items = (await session.execute(select(BppItem).where(BppItem.provider_id == provider.id))).scalars()
    for item in items:
        if category_id in item.category_ids:
            item.search_text = item_search_text(item.descriptor, item.category_ids, provider.categories, item.tags)


# ------------------------------------------------------------------------------ routes


def merchant_routes(sessions: async_sessionmaker[AsyncSession], settings: BppSettings) -> APIRouter:
    router = APIRouter(prefix="/api/v1")
    admin_bearer = HTTPBearer(auto_error=False, scheme_name="OperatorToken", description="LAKOU_BPP_ADMIN_TOKEN")
    current_merchant = merchants.merchant_auth(sessions)

    def require_admin(credentials: HTTPAuthorizationCredentials | None = Depends(admin_bearer)) -> None:
        expected = settings.bpp_admin_token
        if not expected:
            raise HTTPException(403, "the operator API is disabled: set LAKOU_BPP_ADMIN_TOKEN to enable it")
        if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), expected.encode()):
            raise HTTPException(401, "a valid 'Authorization: Bearer <LAKOU_BPP_ADMIN_TOKEN>' header is required",
                                headers={"WWW-Authenticate": 'Bearer realm="lakou-bpp"'})

    admin = {"dependencies": [Depends(require_admin)], "tags": ["merchant accounts"],
             "responses": {401: {"description": "Missing or wrong operator token"},
                           403: {"description": "Operator API disabled (no token configured)"}}}
    own = {"tags": ["merchant catalogue"],
           "responses": {401: {"description": "Missing, unknown or revoked API key"},
                         404: {"description": "No such provider or item among this merchant's"}}}

    # ---- operator: accounts and keys

    @router.post("/admin/merchants", status_code=201, response_model=MerchantCreated, **admin,
                 summary="Create a merchant account; its API key is in the answer, once")
    async def create_merchant(body: MerchantIn) -> MerchantCreated:
        async with sessions() as session:
            merchant, issued = await merchants.create_merchant(session, body.name)
            await session.commit()
        # Ids only: names and contacts stay out of the logs.
        log.info("bpp.merchant_created", merchant_id=merchant.id, key_id=issued.key_id)
        return MerchantCreated(id=merchant.id, name=merchant.name, key_id=issued.key_id, api_key=issued.api_key)

    async def _merchant(session: AsyncSession, merchant_id: str) -> BppMerchant:
        merchant = await session.get(BppMerchant, merchant_id)
        if merchant is None:
            raise HTTPException(404, f"merchant {merchant_id!r} not found")
        return merchant

    @router.post("/admin/merchants/{merchant_id}/keys", status_code=201, response_model=KeyOut, **admin,
                 summary="Issue another API key (rotation: issue, switch, then revoke the old one)")
    async def issue_key(merchant_id: str) -> KeyOut:
        async with sessions() as session:
            await _merchant(session, merchant_id)
            issued = await merchants.add_key(session, merchant_id)
            await session.commit()
        log.info("bpp.merchant_key_issued", merchant_id=merchant_id, key_id=issued.key_id)
        return KeyOut(key_id=issued.key_id, api_key=issued.api_key)

    @router.get("/admin/merchants/{merchant_id}/keys", response_model=list[KeyInfo], **admin,
                summary="A merchant's live API keys (ids only: secrets are never kept)")
    async def list_keys(merchant_id: str) -> list[KeyInfo]:
        async with sessions() as session:
            await _merchant(session, merchant_id)
            keys = await merchants.live_keys(session, merchant_id)
        return [KeyInfo(key_id=key.id, created_at=wire_timestamp(key.created_at)) for key in keys]

    @router.delete("/admin/merchants/{merchant_id}/keys/{key_id}", status_code=204, **admin,
                   summary="Revoke an API key, at once")
    async def revoke(merchant_id: str, key_id: str) -> Response:
        async with sessions() as session:
            if not await merchants.revoke_key(session, merchant_id, key_id):
                raise HTTPException(404, f"no live key {key_id!r} for merchant {merchant_id!r}")
            await session.commit()
        log.info("bpp.merchant_key_revoked", merchant_id=merchant_id, key_id=key_id)
        return Response(status_code=204)

    # ---- merchant: providers

    @router.get("/merchant/me", response_model=MerchantView, tags=["merchant catalogue"],
                responses=own["responses"], summary="The merchant this API key belongs to")
    async def me(merchant_id: str = Depends(current_merchant)) -> MerchantView:
        async with sessions() as session:
            merchant = await _merchant(session, merchant_id)
            ids = (await session.execute(select(BppProviderProfile.provider_id).where(
                BppProviderProfile.merchant_id == merchant_id).order_by(BppProviderProfile.provider_id))).scalars()
            return MerchantView(id=merchant.id, name=merchant.name, providers=list(ids))

    @router.post("/merchant/providers", status_code=201, response_model=ProviderOut, **own,
                 summary="Create a provider (a shop) owned by this merchant")
    async def create_provider(body: ProviderIn, merchant_id: str = Depends(current_merchant)) -> ProviderOut:
        async with sessions() as session:
            if await session.get(BppProvider, body.id) is not None:
                # Provider ids are public (every on_search shows them), so saying it is taken leaks nothing.
                raise HTTPException(409, f"provider id {body.id!r} is already taken on this BPP; choose another")
            provider = _provider_row(body.id, body, [])
            profile = BppProviderProfile(
                provider_id=body.id, merchant_id=merchant_id, siret=body.siret,
                opening_hours=[h.model_dump() for h in body.opening_hours],
                contact=body.contact.model_dump(exclude_none=True))
            session.add(provider)
            await session.flush()  # the provider before its profile: the foreign key wants it
            session.add(profile)
            try:
                await session.commit()
            except IntegrityError:  # created by a concurrent request between the check and here
                raise HTTPException(409, f"provider id {body.id!r} is already taken on this BPP") from None
            return _provider_out(provider, profile)

    @router.get("/merchant/providers", response_model=list[ProviderOut], **own,
                summary="This merchant's providers")
    async def list_providers(merchant_id: str = Depends(current_merchant)) -> list[ProviderOut]:
        async with sessions() as session:
            rows = (await session.execute(
                select(BppProvider, BppProviderProfile)
                .join(BppProviderProfile, BppProviderProfile.provider_id == BppProvider.id)
                .where(BppProviderProfile.merchant_id == merchant_id).order_by(BppProvider.id))).all()
            return [_provider_out(provider, profile) for provider, profile in rows]

    @router.get("/merchant/providers/{provider_id}", response_model=ProviderOut, **own,
                summary="One of this merchant's providers")
    async def get_provider(provider_id: IdPath, merchant_id: str = Depends(current_merchant)) -> ProviderOut:
        async with sessions() as session:
            return _provider_out(*await _owned(session, merchant_id, provider_id))

    @router.put("/merchant/providers/{provider_id}", response_model=ProviderOut, **own,
                summary="Replace a provider's profile (its categories and items stay)")
    async def update_provider(provider_id: IdPath, body: ProfileIn, merchant_id: str = Depends(current_merchant)) -> ProviderOut:
        async with sessions() as session:
            provider, profile = await _owned(session, merchant_id, provider_id, lock=True)
            fresh = _provider_row(provider_id, body, provider.categories)
            for column in ("descriptor", "location", "city_code", "fulfillment_types", "other_locations",
                           "payment_types", "cancellation_terms", "return_terms", "search_text"):
                setattr(provider, column, getattr(fresh, column))
            provider.updated_at = profile.updated_at = _now()
            profile.siret = body.siret
            profile.opening_hours = [h.model_dump() for h in body.opening_hours]
            profile.contact = body.contact.model_dump(exclude_none=True)
            await session.commit()
            return _provider_out(provider, profile)

    # ---- merchant: categories

    @router.get("/merchant/providers/{provider_id}/categories", **own,
                summary="A provider's categories")
    async def list_categories(provider_id: IdPath, merchant_id: str = Depends(current_merchant)) -> list[dict[str, Any]]:
        async with sessions() as session:
            provider, _ = await _owned(session, merchant_id, provider_id)
            return provider.categories

    @router.put("/merchant/providers/{provider_id}/categories/{category_id}", **own,
                summary="Create or rename a category")
    async def put_category(provider_id: IdPath, category_id: IdPath, body: CategoryIn,
                           merchant_id: str = Depends(current_merchant)) -> dict[str, Any]:
        async with sessions() as session:
            provider, _ = await _owned(session, merchant_id, provider_id, lock=True)
            category = {"id": category_id,
                        "descriptor": {lang: text.model_dump(exclude_none=True) for lang, text in body.descriptor.items()}}
            known = any(c["id"] == category_id for c in provider.categories)
            # A new list, not an in-place change: the JSON column is saved when it is reassigned.
            provider.categories = ([category if c["id"] == category_id else c for c in provider.categories]
                                   if known else [*provider.categories, category])
            provider.updated_at = _now()
            await _reindex_items(session, provider, category_id)
            await session.commit()
            return category

    @router.delete("/merchant/providers/{provider_id}/categories/{category_id}", status_code=204, **own,
                   summary="Delete a category no item uses")
    async def delete_category(provider_id: IdPath, category_id: IdPath, merchant_id: str = Depends(current_merchant)) -> Response:
        async with sessions() as session:
            provider, _ = await _owned(session, merchant_id, provider_id, lock=True)
            if not any(c["id"] == category_id for c in provider.categories):
                raise HTTPException(404, f"category {category_id!r} not found in provider {provider_id!r}")
            used = (await session.execute(select(BppItem.id, BppItem.category_ids).where(
                BppItem.provider_id == provider_id))).all()
            users = sorted(item_id for item_id, ids in used if category_id in ids)
            if users:
                raise HTTPException(409, f"category {category_id!r} is used by items {users}; move them first")
            provider.categories = [c for c in provider.categories if c["id"] != category_id]
            provider.updated_at = _now()
            await session.commit()
        return Response(status_code=204)

    # ---- merchant: items

    @router.get("/merchant/providers/{provider_id}/items", response_model=list[ItemOut], **own,
                summary="A provider's items")
    async def list_items(provider_id: IdPath, merchant_id: str = Depends(current_merchant)) -> list[ItemOut]:
        async with sessions() as session:
            await _owned(session, merchant_id, provider_id)
            rows = (await session.execute(select(BppItem).where(BppItem.provider_id == provider_id)
                                          .order_by(BppItem.id))).scalars()
            return [_item_out(item) for item in rows]

    @router.get("/merchant/providers/{provider_id}/items/{item_id}", response_model=ItemOut, **own,
                summary="One item")
    async def get_item(provider_id: IdPath, item_id: IdPath, merchant_id: str = Depends(current_merchant)) -> ItemOut:
        async with sessions() as session:
            await _owned(session, merchant_id, provider_id)
            return _item_out(await _item(session, provider_id, item_id))

    @router.put("/merchant/providers/{provider_id}/items/{item_id}", response_model=ItemOut, **own,
                summary="Create or replace an item; in search at once")
    async def put_item(provider_id: IdPath, item_id: IdPath, body: ItemIn, response: Response,
                       merchant_id: str = Depends(current_merchant)) -> ItemOut:
        async with sessions() as session:
            provider, _ = await _owned(session, merchant_id, provider_id, lock=True)
            _check_categories(provider, body.category_ids)
            descriptor = _item_descriptor(body)
            values = {
                "descriptor": descriptor, "category_ids": list(body.category_ids), "price": Decimal(body.price),
                "currency": body.currency, "unit": body.unit, "unit_value": body.unit_value, "stock": body.stock,
                "tags": list(body.tags) or None,
                "search_text": item_search_text(descriptor, body.category_ids, provider.categories, body.tags),
                "updated_at": _now(),
            }
            item = await session.get(BppItem, (provider_id, item_id))
            if item is None:
                item = BppItem(provider_id=provider_id, id=item_id, **values)
                session.add(item)
                response.status_code = 201
            else:
                for column, value in values.items():
                    setattr(item, column, value)
            try:
                await session.commit()
            except IntegrityError:  # a concurrent PUT created it first: the client can retry
                raise HTTPException(409, f"item {item_id!r} was written concurrently; retry") from None
            return _item_out(item)

    @router.patch("/merchant/providers/{provider_id}/items/{item_id}", response_model=ItemOut, **own,
                  summary="Change an item's price and/or stock")
    async def patch_item(provider_id: IdPath, item_id: IdPath, body: ItemPatch, merchant_id: str = Depends(current_merchant)) -> ItemOut:
        async with sessions() as session:
            await _owned(session, merchant_id, provider_id)
            item = await _item(session, provider_id, item_id)
            if body.price is not None:
                item.price = Decimal(body.price)
            if body.stock is not None:
                item.stock = body.stock
            item.updated_at = _now()
            await session.commit()
            return _item_out(item)

    @router.delete("/merchant/providers/{provider_id}/items/{item_id}", status_code=204, **own,
                   summary="Remove an item from the catalogue (refused once it has been ordered)")
    async def delete_item(provider_id: IdPath, item_id: IdPath, merchant_id: str = Depends(current_merchant)) -> Response:
        async with sessions() as session:
            await _owned(session, merchant_id, provider_id)
            await session.delete(await _item(session, provider_id, item_id))
            try:
                await session.commit()
            except IntegrityError:
                # Order lines point at the item: keep it, so orders keep their history.
                raise HTTPException(409, f"item {item_id!r} has orders and cannot be deleted; "
                                         "set its stock to 0 instead") from None
        return Response(status_code=204)

    return router


__all__ = ["ProfileIn", "ProviderIn", "merchant_routes", "siret_ok"]
