"""The BPP's own settings, on top of every node's (`LAKOU_BPP_*` environment variables)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from beckn.settings import Settings


class BppSettings(Settings):
    bpp_catalogue: str = Field(
        "",
        description='Catalogue to seed on first start, when the catalogue is empty: "demo" for the built-in '
        "Martinique demo merchants, a path to a JSON file in the same format, or empty for none.",
    )
    bpp_on_search_via: Literal["direct", "gateway"] = Field(
        "direct",
        description='Where on_search goes: "direct" to context.bap_uri (ONDC, ONIX practice), or "gateway" back '
        "to the gateway that forwarded the search (beckn core diagrams); a search that came straight from a "
        "BAP is always answered directly.",
    )
    bpp_search_page_items: int = Field(
        100,
        ge=0,
        description="At most this many items in one on_search callback (0: no limit); a larger search result is "
        "sent as several on_search callbacks for the same search (same message_id), each a complete catalog.",
    )
    bpp_admin_token: str | None = Field(
        None,
        description="Bearer token of the read-only operator API (GET /api/v1/orders/{id}); unset disables it.",
    )


def bpp_settings(settings: Settings) -> BppSettings:
    """The BPP settings from a plain `Settings` (what `lakou serve` builds), keeping every value."""
    if isinstance(settings, BppSettings):
        return settings
    # model_validate on the dumped values: the LAKOU_BPP_* variables still come from the environment
    # for fields the plain Settings does not know.
    return BppSettings(**settings.model_dump())
