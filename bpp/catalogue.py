"""The catalogue: its file format, seeding it into the tables, and showing it as Beckn objects.

A catalogue file (`demo_catalogue.json`, or any file named by LAKOU_BPP_CATALOGUE) is
`{"providers": [...]}`; each provider has a multilingual `descriptor` (`{"fr": {"name",
"short_desc"}, "en": ...}`), its main shop `location` and optional `other_locations` (more
shops or market stalls, where buyers may also collect: on_search offers a pickup stop at each),
its terms (bpp.terms), `categories`, the `fulfillment_types` it offers,
optional `delivery` terms (`{"radius_km": "8", "fee": "5.00", "free_above": "60.00"}`, see
bpp.fulfilment) and its `items` (price as a decimal string in EUR, `stock`, `unit`, `unit_value`
and optional `tags`: "local" for produit péi, "organic" for bio).
The same shape will be what the merchant onboarding API accepts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from beckn.models.base import Gps
from bpp.fulfilment import DELIVERY_KEY, DeliveryTerms, delivery_terms
from bpp.offers import RESIDENTS_KEY, offer_json
from bpp.credentials import credential_tags
from bpp.hours import contact_json, hours_tags, provider_time
from bpp.payments.prepayment import ON_FULFILLMENT, PAYMENT_IDS
from bpp.tables import BppItem, BppProvider, BppProviderProfile
from bpp.terms import (
    CancellationTerm,
    PaymentType,
    ReturnTerms,
    payment_types_of,
    unique_payment_types,
    unique_states,
)
from bpp.text import DEFAULT_LANGUAGE, LANGUAGES, descriptor_texts, indexed_text, localised

DEMO_CATALOGUE = Path(__file__).resolve().parent / "demo_catalogue.json"
# Named seeds shipped with Lakou: the Martinique demo, and a partner territory's for federation demos.
DEMO_CATALOGUES = {
    "demo": DEMO_CATALOGUE,
    "demo-guadeloupe": Path(__file__).resolve().parent / "demo_catalogue_guadeloupe.json",
}
COUNTRY = {"code": "MTQ", "name": "Martinique"}
STATE = {"code": "972", "name": "Martinique"}
# A shop's state and country follow its commune's INSEE department (a BPP of a partner territory).
TERRITORIES = {"971": ("GLP", "Guadeloupe"), "972": ("MTQ", "Martinique"), "973": ("GUF", "Guyane"),
               "974": ("REU", "La Réunion"), "976": ("MYT", "Mayotte")}
# Fulfillment types of the network policy (Beckn leaves the codes to it).
FULFILLMENT_TYPES = ("Self-Pickup", "Delivery")
# Item tags a merchant may set, each shown in on_search as a Beckn TagGroup (group code, group
# name, tag name), in the network's four languages. "Péi" is Creole for "from the island".
ITEM_TAGS: dict[str, tuple[str, dict[str, str], dict[str, str]]] = {
    "local": ("lakou:origin",
              {"fr": "Origine", "en": "Origin", "es": "Origen", "de": "Herkunft"},
              {"fr": "Produit péi", "en": "Local produce", "es": "Producto local", "de": "Regionales Produkt"}),
    "organic": ("lakou:label",
                {"fr": "Label", "en": "Label", "es": "Sello", "de": "Siegel"},
                {"fr": "Bio", "en": "Organic", "es": "Ecológico", "de": "Bio"}),
}
ItemTag = Literal["local", "organic"]

Id = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
Price = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,9}\.[0-9]{2}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextFile(_Strict):
    name: str = Field(min_length=1)
    short_desc: str | None = None
    long_desc: str | None = None


def unique_tags(value: list[str]) -> list[str]:
    if len(set(value)) != len(value):
        raise ValueError("a tag is listed twice")
    return value


def _check_languages(value: dict[str, TextFile]) -> dict[str, TextFile]:
    unknown = set(value) - set(LANGUAGES)
    if unknown:
        raise ValueError(f"unknown language(s) {sorted(unknown)}; use {', '.join(LANGUAGES)}")
    if DEFAULT_LANGUAGE not in value:
        raise ValueError(f"a {DEFAULT_LANGUAGE!r} text is required (the network's default language)")
    return value


class CategoryFile(_Strict):
    id: Id
    descriptor: dict[str, TextFile]
    _langs = field_validator("descriptor")(_check_languages)


class CityFile(_Strict):
    code: str = Field(pattern=r"^insee:97[1-46][0-9]{2}$")  # overseas departments (971-974, 976)
    name: str


class LocationFile(_Strict):
    id: Id
    gps: Gps
    address: str
    city: CityFile
    area_code: str = Field(pattern=r"^[0-9]{5}$")


class ItemFile(_Strict):
    id: Id
    descriptor: dict[str, TextFile]
    category_ids: list[Id] = []
    price: Price
    currency: str = "EUR"
    unit: str = Field(min_length=1, max_length=32)
    unit_value: str = Field("1", pattern=r"^[0-9]+(\.[0-9]+)?$")
    stock: int = Field(ge=0)
    tags: list[ItemTag] = Field(default_factory=list, max_length=len(ITEM_TAGS))
    _langs = field_validator("descriptor")(_check_languages)
    _tags = field_validator("tags")(unique_tags)


class ProviderFile(_Strict):
    id: Id
    descriptor: dict[str, TextFile]
    location: LocationFile  # the main shop: delivery zones are measured from it
    other_locations: list[LocationFile] = Field(default_factory=list, max_length=20)  # more shops, pickup points
    fulfillment_types: list[str] = Field(default_factory=lambda: ["Self-Pickup"], min_length=1)
    delivery: DeliveryTerms | None = None  # zone and fee, when "Delivery" is offered (bpp.fulfilment)
    # The merchant's terms (bpp.terms); None keeps the network default.
    payment_types: list[PaymentType] | None = Field(None, min_length=1)
    cancellation_terms: list[CancellationTerm] | None = None
    return_terms: ReturnTerms | None = None
    # A residents' discount, on a Martinique resident credential (bpp.offers); stored in `location`.
    resident_discount_percent: int | None = Field(None, ge=1, le=90)
    categories: list[CategoryFile] = []
    items: list[ItemFile] = []
    _langs = field_validator("descriptor")(_check_languages)
    _payment_types = field_validator("payment_types")(lambda value: value and unique_payment_types(value))
    _states = field_validator("cancellation_terms")(lambda value: value and unique_states(value))

    @model_validator(mode="after")
    def _location_ids_unique(self) -> ProviderFile:
        ids = [self.location.id, *(location.id for location in self.other_locations)]
        if len(set(ids)) != len(ids):
            raise ValueError("location ids must be unique within a provider")
        return self

    @field_validator("fulfillment_types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        unknown = set(value) - set(FULFILLMENT_TYPES)
        if unknown:
            raise ValueError(f"unknown fulfillment type(s) {sorted(unknown)}; use {', '.join(FULFILLMENT_TYPES)}")
        return value

    @model_validator(mode="after")
    def _delivery_needs_the_type(self) -> ProviderFile:
        if self.delivery is not None and "Delivery" not in self.fulfillment_types:
            raise ValueError("delivery terms are given but 'Delivery' is not in fulfillment_types")
        return self


class CatalogueFile(_Strict):
    providers: list[ProviderFile]


def load_catalogue(source: str) -> CatalogueFile | None:
    """The catalogue named by LAKOU_BPP_CATALOGUE: "demo", "demo-guadeloupe", a file path, or "" (none)."""
    if not source:
        return None
    path = DEMO_CATALOGUES.get(source) or Path(source)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read the catalogue file {str(path)!r}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"catalogue file {str(path)!r} is not valid JSON: {exc}") from None
    catalogue = CatalogueFile.model_validate(raw)
    for provider in catalogue.providers:
        known = {category.id for category in provider.categories}
        for item in provider.items:
            missing = set(item.category_ids) - known
            if missing:
                raise ValueError(f"item {provider.id}/{item.id} names unknown categories {sorted(missing)}")
    return catalogue


# ------------------------------------------------------------------------------- rows


def _descriptor_json(descriptor: dict[str, TextFile]) -> dict[str, dict[str, str]]:
    return {lang: text.model_dump(exclude_none=True) for lang, text in descriptor.items()}


def item_search_text(descriptor: dict[str, Any], category_ids: Sequence[str],
                     categories: Sequence[dict[str, Any]], tags: Sequence[str] | None = None) -> str:
    """What a search matches an item against: its texts, its categories' and tags' names, all languages."""
    texts = descriptor_texts(descriptor)
    for tag in tags or ():
        texts.extend(ITEM_TAGS[tag][2].values())  # so "bio" or "produit péi" finds them
    for category in categories:
        if category["id"] in category_ids:
            texts.extend(descriptor_texts(category["descriptor"]))
    return indexed_text(texts)


def provider_rows(provider: ProviderFile) -> tuple[BppProvider, list[BppItem]]:
    categories = [{"id": c.id, "descriptor": _descriptor_json(c.descriptor)} for c in provider.categories]
    descriptor = _descriptor_json(provider.descriptor)
    row = BppProvider(
        id=provider.id,
        descriptor=descriptor,
        location=provider.location.model_dump()
        | ({DELIVERY_KEY: provider.delivery.model_dump(exclude_none=True)} if provider.delivery else {})
        | ({RESIDENTS_KEY: provider.resident_discount_percent}
           if provider.resident_discount_percent else {}),
        city_code=provider.location.city.code,
        categories=categories,
        fulfillment_types=list(provider.fulfillment_types),
        other_locations=[location.model_dump() for location in provider.other_locations] or None,
        payment_types=list(provider.payment_types) if provider.payment_types else None,
        cancellation_terms=None if provider.cancellation_terms is None
        else [term.model_dump() for term in provider.cancellation_terms],
        return_terms=provider.return_terms.model_dump(exclude_none=True) if provider.return_terms else None,
        # Names only: a merchant's description ("fish and seafood...") would make all its items
        # match words that describe only some of them.
        search_text=indexed_text(text["name"] for text in descriptor.values()),
    )
    items = []
    for item in provider.items:
        item_descriptor = _descriptor_json(item.descriptor)
        items.append(BppItem(
            provider_id=provider.id,
            id=item.id,
            descriptor=item_descriptor,
            category_ids=list(item.category_ids),
            price=Decimal(item.price),
            currency=item.currency,
            unit=item.unit,
            unit_value=item.unit_value,
            stock=item.stock,
            tags=list(item.tags) or None,
            search_text=item_search_text(item_descriptor, item.category_ids, categories, item.tags),
        ))
    return row, items


async def seed_if_empty(sessions: async_sessionmaker[AsyncSession], catalogue: CatalogueFile) -> bool:
    """Write `catalogue` when no provider exists yet. Returns True if this call seeded it.

    Two processes starting together may both find the catalogue empty; the primary keys let only
    one of them write it, and the other gives up quietly.
    """
    async with sessions() as session:
        if (await session.execute(select(func.count()).select_from(BppProvider))).scalar_one():
            return False
        for provider in catalogue.providers:
            row, items = provider_rows(provider)
            session.add(row)
            await session.flush()  # providers before their items: the foreign key wants it
            session.add_all(items)
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            return False
    return True


async def counts(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessions() as session:
        providers = (await session.execute(select(func.count()).select_from(BppProvider))).scalar_one()
        items = (await session.execute(select(func.count()).select_from(BppItem))).scalar_one()
    return {"providers": providers, "items": items}


# ------------------------------------------------------------------------------- Beckn views


def money(value: Decimal) -> str:
    """A Beckn DecimalValue with two decimals: Decimal("4.5") -> "4.50"."""
    return f"{value.quantize(Decimal('0.01')):f}"


def _territory(city_code: str) -> dict[str, Any]:
    department = city_code.removeprefix("insee:")[:3]
    if department not in TERRITORIES:
        return {"state": dict(STATE), "country": dict(COUNTRY)}
    country, name = TERRITORIES[department]
    return {"state": {"code": department, "name": name}, "country": {"code": country, "name": name}}


def all_locations(provider: BppProvider) -> list[dict[str, Any]]:
    """Every location of the provider as stored: the main shop first, then the others."""
    return [provider.location, *(provider.other_locations or ())]


def location_json(provider: BppProvider, location: dict[str, Any] | None = None) -> dict[str, Any]:
    """A location of the provider (its main shop unless `location` is given) as a Beckn Location."""
    location = provider.location if location is None else location
    return {
        "id": location["id"],
        "gps": location["gps"],
        "address": location["address"],
        "city": dict(location["city"]),
        **_territory(location["city"]["code"]),
        "area_code": location["area_code"],
    }


def fulfillment_id(provider_id: str, fulfillment_type: str) -> str:
    return f"{provider_id}-{fulfillment_type.lower()}"


def pickup_stop(provider: BppProvider, location: dict[str, Any] | None = None,
                contact: dict[str, str] | None = None) -> dict[str, Any]:
    """A pickup at one of the provider's locations: a "start" Stop whose id is the location's id."""
    shown = location_json(provider, location)
    return {"id": shown["id"], "type": "start", "location": shown} | ({"contact": contact} if contact else {})


def find_location(provider: BppProvider, location_id: str | None) -> dict[str, Any] | None:
    """The stored location with this id (the main shop when `location_id` is None), else None."""
    if location_id is None:
        return provider.location
    return next((location for location in all_locations(provider) if location["id"] == location_id), None)


def fulfillments_json(provider: BppProvider, profile: BppProviderProfile | None = None) -> list[dict[str, Any]]:
    """The provider's fulfilments. Self-Pickup has one "start" Stop per location (main shop first):
    a BAP picks one by sending that stop (or `provider.locations[0].id`) back in select/init/confirm."""
    contact = contact_json(profile.contact) if profile is not None else None
    out = []
    for kind in provider.fulfillment_types:
        fulfillment: dict[str, Any] = {"id": fulfillment_id(provider.id, kind), "type": kind}
        if contact:
            fulfillment["contact"] = contact  # the shop's business line, for questions about this fulfilment
        if kind == "Self-Pickup":
            fulfillment["stops"] = [pickup_stop(provider, location, contact) for location in all_locations(provider)]
        terms = delivery_terms(provider.location) if kind == "Delivery" else None
        if terms is not None:
            # Beckn has no field for a delivery zone or fee: a tag group, as the spec intends for
            # network-specific terms, so a BAP can show them before select.
            fulfillment["tags"] = [{
                "descriptor": {"code": "lakou:delivery"},
                "list": [{"descriptor": {"code": code}, "value": value}
                         for code, value in terms.model_dump(exclude_none=True).items()],
            }]
        out.append(fulfillment)
    return out


PAYMENT_ID = PAYMENT_IDS[ON_FULFILLMENT]


def payment_terms(kind: str = ON_FULFILLMENT) -> dict[str, Any]:
    """A payment term: ON-FULFILLMENT (pay the merchant at pickup or delivery) or PRE-ORDER (prepay
    online by payment link, bpp.payments), each with a stable id items name in `payment_ids`."""
    return {"id": PAYMENT_IDS[kind], "type": kind, "collected_by": "BPP"}


async def load_profiles(session: AsyncSession, provider_ids: Sequence[str]) -> dict[str, BppProviderProfile]:
    """The merchant profiles (opening hours, contact) of these providers, in one query. Providers
    seeded from a catalogue file have none and are simply absent from the answer."""
    ids = sorted(set(provider_ids))
    if not ids:
        return {}
    rows = (await session.execute(
        select(BppProviderProfile).where(BppProviderProfile.provider_id.in_(ids)))).scalars()
    return {row.provider_id: row for row in rows}


def provider_json(provider: BppProvider, lang: str, *, full: bool = True,
                  profile: BppProviderProfile | None = None,
                  payment_types: Sequence[str] | None = None) -> dict[str, Any]:
    """The provider as a Beckn Provider; with its merchant `profile`, also its opening hours
    (`time` and a `lakou:opening_hours` TagGroup, see bpp.hours) and business contact.
    `payment_types`: the terms this BPP can take from it (`bpp.payments.payments_of(session)
    .offered(provider)`: no PRE-ORDER without a payment processor); default: all it accepts."""
    out: dict[str, Any] = {"id": provider.id, "descriptor": localised(provider.descriptor, lang)}
    if full:
        out["categories"] = [
            {"id": c["id"], "descriptor": {"name": localised(c["descriptor"], lang)["name"]}}
            for c in provider.categories
        ]
        out["locations"] = [location_json(provider, location) for location in all_locations(provider)]
        out["fulfillments"] = fulfillments_json(provider, profile)
        out["payments"] = [payment_terms(kind) for kind in
                           (payment_types_of(provider) if payment_types is None else payment_types)]
        hours = profile.opening_hours if profile is not None else []
        time = provider_time(hours, lang)
        if time is not None:
            out["time"] = time
            out["tags"] = [hours_tags(hours, lang)]
        credentials = credential_tags(profile)  # the merchant's business credential (bpp.credentials)
        if credentials is not None:
            out.setdefault("tags", []).append(credentials)
        offer = offer_json(provider, lang)
        if offer is not None:
            out["offers"] = [offer]
    return out


def tags_json(tags: Sequence[str] | None, lang: str) -> list[dict[str, Any]]:
    """An item's tags as Beckn TagGroups, one group per kind, named in the shopper's language."""
    groups: dict[str, dict[str, Any]] = {}
    for tag in tags or ():
        group_code, group_name, tag_name = ITEM_TAGS[tag]
        group = groups.setdefault(group_code, {"descriptor": {"code": group_code, "name": group_name[lang]},
                                               "list": []})
        group["list"].append({"descriptor": {"code": tag, "name": tag_name[lang]}, "value": "true"})
    return list(groups.values())


def item_json(item: BppItem, provider: BppProvider, lang: str,
              payment_types: Sequence[str] | None = None) -> dict[str, Any]:
    """The item as a Beckn Item; `payment_types` as for `provider_json`."""
    out = {
        "id": item.id,
        "descriptor": localised(item.descriptor, lang),
        "price": {"currency": item.currency, "value": money(item.price)},
        "quantity": {
            "available": {"count": item.stock},
            "unitized": {"count": 1, "measure": {"unit": item.unit, "value": item.unit_value}},
        },
        "category_ids": list(item.category_ids),
        "fulfillment_ids": [fulfillment_id(provider.id, kind) for kind in provider.fulfillment_types],
        "location_ids": [location["id"] for location in all_locations(provider)],
        "payment_ids": [PAYMENT_IDS[kind] for kind in
                        (payment_types_of(provider) if payment_types is None else payment_types)],
    }
    if item.tags:
        out["tags"] = tags_json(item.tags, lang)
    return out
