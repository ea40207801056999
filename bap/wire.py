"""Reading what a BPP sent, defensively: its JSON is validated against the Beckn schema on the way
in, but most fields are optional and a peer may still send odd shapes (a list where an object is
expected, a number for a string). These read a value or fall back to empty, so a view built from a
BPP's answer never turns a malformed answer into a 500."""

from __future__ import annotations

from typing import Any


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a list (anything else in it is skipped); [] when it is not a list."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def descriptor(obj: Any) -> dict[str, Any]:
    return as_dict(as_dict(obj).get("descriptor"))


__all__ = ["as_dict", "descriptor", "dicts"]
