"""Delivery terms of a shop: the zone it delivers to (a radius around the shop) and the fee.

A provider that offers "Delivery" may set `delivery` terms: `radius_km` (a decimal string; the
end stop's GPS must lie within that great-circle distance of the shop), `fee` (EUR decimal
string) and optionally `free_above` (the fee is waived when the items total reaches it). A
provider offering Delivery without terms delivers anywhere, free: how catalogues written before
these terms keep working. The terms live in the provider's `location` JSON (they describe the
shop's reach), so they needed no migration.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from bpp.geo import distance_km, parse_gps

Price = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,9}\.[0-9]{2}$")]
DELIVERY_KEY = "delivery"  # under the provider's location JSON
# Breakup titles of the delivery line, in the network's languages.
FEE_TITLE = {"fr": "Frais de livraison", "en": "Delivery fee", "es": "Gastos de envío", "de": "Liefergebühr"}


class DeliveryTerms(BaseModel):
    model_config = ConfigDict(extra="forbid")

    radius_km: str = Field(pattern=r"^[0-9]{1,3}(\.[0-9]{1,3})?$", examples=["8"],
                           description="Delivery zone: the distance from the shop, in km, a drop-off may be.")
    fee: Price = Field(examples=["3.50"], description="EUR, a Beckn decimal string with cents.")
    free_above: Price | None = Field(None, examples=["40.00"],
                                     description="No fee when the items total is at least this (EUR).")

    @field_validator("radius_km")
    @classmethod
    def _positive(cls, value: str) -> str:
        if Decimal(value) <= 0:
            raise ValueError("the delivery radius must be more than 0 km")
        return value


def delivery_terms(location: dict[str, Any]) -> DeliveryTerms | None:
    raw = location.get(DELIVERY_KEY)
    return DeliveryTerms.model_validate(raw) if raw else None


def fee_for(terms: DeliveryTerms | None, items_total: Decimal) -> Decimal:
    """The delivery fee for an order whose items cost `items_total`."""
    if terms is None:
        return Decimal("0")
    if terms.free_above is not None and items_total >= Decimal(terms.free_above):
        return Decimal("0")
    return Decimal(terms.fee)


def outside_zone(terms: DeliveryTerms | None, shop_gps: str, drop_gps: str) -> float | None:
    """The drop-off's distance in km when it lies outside the zone; None when deliverable."""
    if terms is None:
        return None
    distance = distance_km(parse_gps(shop_gps), parse_gps(drop_gps))
    return distance if distance > float(terms.radius_km) else None


__all__ = ["DELIVERY_KEY", "FEE_TITLE", "DeliveryTerms", "delivery_terms", "fee_for", "outside_zone"]
