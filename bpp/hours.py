"""A merchant's published opening hours and business contact, as Beckn 1.1.1 shows them in on_search.

The merchant API stores opening hours as a list of `{"days": ["mon", ...], "opens": "07:30",
"closes": "12:30"}` slots and a contact `{"phone", "email", "url"}` (`BppProviderProfile`).
Beckn 1.1.1 has no field for a weekly timetable (`Time.range` holds date-times, `Time.schedule`
repeating timestamps), so they are shown twice:

- `Provider.time`: `label`, the timetable for people in the shopper's language
  ("lun.-ven. 07:30-12:30 · sam. 08:00-12:00"), and `days`, the comma-separated ISO weekday
  numbers (1 = Monday ... 7 = Sunday) on which the shop opens, as the spec's `Time.days` describes;
- a `lakou:opening_hours` TagGroup on the provider, for programs: one Tag per open day, its
  `descriptor.code` the day ("mon" ... "sun", week order) and its `value` the day's time ranges,
  24-hour local time (America/Martinique), comma-separated: "07:30-12:30,14:00-17:00". A day not
  listed is closed.

The contact is the business phone and e-mail the merchant published (no person's data): it goes
in `Fulfillment.contact` and on each pickup `Stop.contact`, where Beckn has a `Contact` object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
GROUP_CODE = "lakou:opening_hours"
_GROUP_NAME = {"fr": "Horaires d'ouverture", "en": "Opening hours", "es": "Horario", "de": "Öffnungszeiten"}
_DAY_NAMES = {
    "fr": ("lun.", "mar.", "mer.", "jeu.", "ven.", "sam.", "dim."),
    "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
    "es": ("lun.", "mar.", "mié.", "jue.", "vie.", "sáb.", "dom."),
    "de": ("Mo", "Di", "Mi", "Do", "Fr", "Sa", "So"),
}


def weekly(opening_hours: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Day -> its sorted, distinct "HH:MM-HH:MM" ranges, open days only, in week order."""
    by_day: dict[str, set[str]] = {}
    for slot in opening_hours:
        for day in slot["days"]:
            by_day.setdefault(day, set()).add(f"{slot['opens']}-{slot['closes']}")
    return {day: sorted(by_day[day]) for day in DAYS if day in by_day}


def _label(table: dict[str, list[str]], lang: str) -> str:
    """Runs of consecutive days with the same hours, merged: "lun.-ven. 07:30-12:30 · sam. 08:00-12:00"."""
    names = _DAY_NAMES.get(lang, _DAY_NAMES["fr"])
    parts: list[str] = []
    run: list[int] = []
    for index, day in enumerate(DAYS + ("",)):
        hours = table.get(day)
        if run and (hours != table[DAYS[run[0]]] or index != run[-1] + 1):
            days = names[run[0]] if len(run) == 1 else f"{names[run[0]]}-{names[run[-1]]}"
            parts.append(f"{days} {', '.join(table[DAYS[run[0]]])}")
            run = []
        if hours:
            run.append(index)
    return " · ".join(parts)


def provider_time(opening_hours: Sequence[Mapping[str, Any]], lang: str) -> dict[str, Any] | None:
    """The Beckn `Provider.time` for these hours, or None when the merchant published none."""
    table = weekly(opening_hours)
    if not table:
        return None
    return {"label": _label(table, lang), "days": ",".join(str(DAYS.index(day) + 1) for day in table)}


def hours_tags(opening_hours: Sequence[Mapping[str, Any]], lang: str) -> dict[str, Any] | None:
    """The machine-readable `lakou:opening_hours` TagGroup, or None when there are no hours."""
    table = weekly(opening_hours)
    if not table:
        return None
    names = _DAY_NAMES.get(lang, _DAY_NAMES["fr"])
    return {
        "descriptor": {"code": GROUP_CODE, "name": _GROUP_NAME.get(lang, _GROUP_NAME["fr"])},
        "list": [{"descriptor": {"code": day, "name": names[DAYS.index(day)]}, "value": ",".join(ranges)}
                 for day, ranges in table.items()],
    }


def contact_json(contact: Mapping[str, Any] | None) -> dict[str, str] | None:
    """The business contact as a Beckn `Contact` (phone without spaces, as the spec's format wants)."""
    out = {}
    if contact and contact.get("phone"):
        out["phone"] = str(contact["phone"]).replace(" ", "")
    if contact and contact.get("email"):
        out["email"] = str(contact["email"])
    return out or None
