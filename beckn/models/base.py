"""The base model and the few constrained wire types the Beckn 1.1 schema defines.

Models are a lossless view of the wire: every field is optional as in the spec, unknown keys
are kept (networks extend the schema, e.g. ONDC's `@ondc/org/...`), and values are never
reformatted. Validation is strict (no "2" -> 2 coercion) so that whatever is accepted dumps back
byte-for-byte equal; a value of the wrong JSON type is refused with a clear error instead.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainValidator
from pydantic_core import PydanticCustomError

# Anchored versions of the spec's patterns: the published DecimalValue pattern is unanchored,
# so as written it would accept "abc1"; a price must be a number and nothing else.
_DECIMAL = re.compile(r"[+-]?([0-9]*[.])?[0-9]+")
_GPS = re.compile(
    r"[-+]?([1-8]?\d(\.\d+)?|90(\.0+)?),\s*[-+]?(180(\.0+)?|((1[0-7]\d)|([1-9]?\d))(\.\d+)?)"
)


class BecknModel(BaseModel):
    """Base of every Beckn object: lenient about unknown keys, strict about JSON types."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, strict=True)

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict to send: only the fields that were set, spec names, extras kept."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def to_wire_json(self) -> bytes:
        """`to_wire()` serialised compactly as UTF-8 JSON bytes, in one pass."""
        return self.model_dump_json(by_alias=True, exclude_unset=True).encode()


def _decimal_value(value: object) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError(
            "decimal_type", 'must be a decimal number written as a JSON string, like "4.50"'
        )
    if _DECIMAL.fullmatch(value) is None:
        raise PydanticCustomError(
            "decimal_format", 'must be a decimal number such as "4.50" (digits, one optional point and sign)'
        )
    return value


def _gps(value: object) -> str:
    if not isinstance(value, str) or _GPS.fullmatch(value) is None:
        raise PydanticCustomError(
            "gps_format", 'must be a "latitude, longitude" string in decimal degrees, like "14.6097, -60.9967"'
        )
    return value


def _int_or_string(value: object) -> int | str:
    # type() rather than isinstance(): bool is an int subclass and must not pass as one.
    if type(value) is int or isinstance(value, str):
        return value  # type: ignore[return-value]
    raise PydanticCustomError("int_or_string_type", "must be an integer or a string")


# `DecimalValue` in the spec: prices and quantities travel as strings, kept verbatim.
DecimalValue = Annotated[str, PlainValidator(_decimal_value)]
# `Gps` in the spec: "lat, lng".
Gps = Annotated[str, PlainValidator(_gps)]
# The object-level `ttl`s disagree within 1.1 (Provider: integer seconds; Catalog, Item: string
# seconds; Quotation: ISO-8601 Duration), and 1.2 turns them all into Durations: accept either
# JSON type and keep it as sent.
Ttl = Annotated[int | str, PlainValidator(_int_or_string)]
