"""Distances on the Earth's surface, for search by GPS circle.

Beckn writes a point as a "latitude, longitude" string in decimal degrees and a radius as a
`Scalar` (`{"value": "5", "unit": "km"}`). Distances are great-circle (haversine) distances on a
sphere of the Earth's mean radius: within a few metres over the sizes of an island, which is
far finer than a shopper's "within 5 km".
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation

EARTH_RADIUS_KM = 6371.0088  # mean radius (IUGG)

# Units a radius may be given in, and their size in kilometres.
DISTANCE_UNITS_KM: dict[str, float] = {
    "m": 0.001, "meter": 0.001, "meters": 0.001, "metre": 0.001, "metres": 0.001,
    "km": 1.0, "kilometer": 1.0, "kilometers": 1.0, "kilometre": 1.0, "kilometres": 1.0,
}


def parse_gps(value: str) -> tuple[float, float]:
    """("14.6097, -60.9967") -> (14.6097, -60.9967). The models already checked the format."""
    latitude, longitude = (float(part) for part in value.split(","))
    return latitude, longitude


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (latitude, longitude) points, in kilometres."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def radius_km(value: str | None, unit: str | None) -> float:
    """A radius in kilometres from a Beckn Scalar's value and unit; ValueError says what is wrong."""
    if unit is None or unit.strip().lower() not in DISTANCE_UNITS_KM:
        raise ValueError(f"radius unit {unit!r} is not a distance unit; use m or km")
    try:
        number = Decimal(value) if value is not None else None
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite() or number < 0:
        raise ValueError(f"radius value {value!r} is not a non-negative decimal number")
    return float(number) * DISTANCE_UNITS_KM[unit.strip().lower()]


__all__ = ["DISTANCE_UNITS_KM", "EARTH_RADIUS_KM", "distance_km", "parse_gps", "radius_km"]
