"""Bulk catalogue routes: export a provider's whole catalogue as CSV or JSON, import one back.

- `GET  /api/v1/merchant/providers/{pid}/catalogue.json` / `.csv` (`?sep=comma` for `,` and
  decimal points; default `;` and decimal commas for French Excel).
- `PUT  /api/v1/merchant/providers/{pid}/catalogue` (`Content-Type: text/csv` or
  `application/json`; `?mode=upsert`, the default, or `?mode=replace`).

Upsert creates or updates the categories and items in the file and leaves the others alone;
replace also deletes categories and items absent from the file, except items that have orders
(each one is an error: keep it in the file with stock 0). The import is all or nothing: every
error of the file is listed in one 422 and nothing is written. Rows equal to what is stored are
not rewritten (their `updated_at` stays), so exporting and importing again changes nothing.
File formats and error shape: bpp/bulk.py.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bpp import bulk, merchants
from bpp.catalogue import item_search_text
from bpp.merchant_api import IdPath, _item_descriptor, _item_out, _now, _owned
from bpp.settings import BppSettings
from bpp.tables import BppItem, BppOrderLine, BppProvider


def _export_items(rows: list[BppItem]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        view = _item_out(row).model_dump(exclude={"updated_at"})
        # Images are kept once, not in each language's texts: the import's shape.
        view["descriptor"] = {lang: {k: v for k, v in text.items() if k != "images"}
                              for lang, text in view["descriptor"].items()}
        out.append(view)
    return out


async def _catalogue(session: AsyncSession, merchant_id: str, provider_id: str) -> dict[str, Any]:
    provider, _ = await _owned(session, merchant_id, provider_id)
    rows = (await session.execute(select(BppItem).where(BppItem.provider_id == provider_id)
                                  .order_by(BppItem.id))).scalars()
    return {"categories": provider.categories, "items": _export_items(list(rows))}


async def _read_limited(request: Request) -> bytes:
    """The body, or 413 as soon as it passes MAX_BYTES (not after reading it all)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > bulk.MAX_BYTES:
        raise _too_large()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > bulk.MAX_BYTES:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large() -> HTTPException:
    return HTTPException(413, f"fichier trop gros : au plus {bulk.MAX_LINES} lignes et "
                              f"{bulk.MAX_BYTES // (1024 * 1024)} Mo ; découpez-le / file too large: at most "
                              f"{bulk.MAX_LINES} lines and {bulk.MAX_BYTES // (1024 * 1024)} MB; split it")


def _unprocessable(errors: list[bulk.LineError]) -> JSONResponse:
    return JSONResponse(status_code=422, content={
        "detail": f"{len(errors)} erreur(s), rien n'a été modifié / {len(errors)} error(s), nothing was changed",
        "errors": [error.as_dict() for error in errors]})


_IMPORT_BODY = {"requestBody": {"required": True, "content": {
    "text/csv": {"schema": {"type": "string"},
                 "example": "type;id;category_ids;name_fr;name_en;price;unit;stock\r\n"
                            "category;fruits;;Fruits;Fruit;;;\r\nitem;corossol-kg;fruits;Corossol;Soursop;4,50;kilogram;12\r\n"},
    "application/json": {"schema": {"type": "object", "properties": {
        "categories": {"type": "array", "items": {"type": "object"}},
        "items": {"type": "array", "items": {"type": "object"}}}}}}}}


def bulk_routes(sessions: async_sessionmaker[AsyncSession], settings: BppSettings) -> APIRouter:
    del settings  # same signature as the other routers; nothing to configure yet
    router = APIRouter(prefix="/api/v1/merchant/providers/{provider_id}", tags=["merchant catalogue"],
                       responses={401: {"description": "Missing, unknown or revoked API key"},
                                  404: {"description": "No such provider among this merchant's"}})
    current_merchant = merchants.merchant_auth(sessions)

    @router.get("/catalogue.json", summary="Export the whole catalogue as JSON (the import format)")
    async def export_json(provider_id: IdPath, merchant_id: str = Depends(current_merchant)) -> dict[str, Any]:
        async with sessions() as session:
            return await _catalogue(session, merchant_id, provider_id)

    @router.get("/catalogue.csv", summary="Export the whole catalogue as a spreadsheet (CSV)",
                response_class=Response, responses={200: {"content": {"text/csv": {}}}})
    async def export_csv(provider_id: IdPath, sep: Literal["semicolon", "comma"] = "semicolon",
                         merchant_id: str = Depends(current_merchant)) -> Response:
        async with sessions() as session:
            catalogue = await _catalogue(session, merchant_id, provider_id)
        return Response(bulk.to_csv(catalogue["categories"], catalogue["items"], comma=sep == "comma"),
                        media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{provider_id}-catalogue.csv"'})

    @router.put("/catalogue", summary="Import a whole catalogue (CSV or JSON), all or nothing",
                openapi_extra=_IMPORT_BODY,
                responses={413: {"description": "More than 5,000 lines or 2 MB"},
                           415: {"description": "Neither text/csv nor application/json"},
                           422: {"description": "Every error of the file, with its line and column"}})
    async def import_catalogue(provider_id: IdPath, request: Request,
                               mode: Literal["upsert", "replace"] = Query("upsert"),
                               merchant_id: str = Depends(current_merchant)) -> Any:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in ("text/csv", "application/json"):
            raise HTTPException(415, "send Content-Type: text/csv or application/json")
        async with sessions() as session:
            await _owned(session, merchant_id, provider_id)  # 404 before reading a stranger's upload
        data = await _read_limited(request)
        try:
            parsed = bulk.parse_csv(data) if media == "text/csv" else bulk.parse_json(data)
        except bulk.TooLarge:
            raise _too_large() from None
        async with sessions() as session:
            provider, _ = await _owned(session, merchant_id, provider_id, lock=True)
            # Run even when the file has errors: what only the database can tell is listed too.
            result = await _apply(session, provider, parsed, replace=mode == "replace")
            errors = parsed.errors + (result if isinstance(result, list) else [])
            if errors:
                await session.rollback()
                errors.sort(key=lambda e: (e.line is None, e.line or 0))
                return _unprocessable(errors)
            try:
                await session.commit()
            except IntegrityError:  # an order arrived for a deleted item meanwhile: nothing written
                raise HTTPException(409, "the catalogue changed during the import (an order?); retry") from None
            return result

    return router


async def _apply(session: AsyncSession, provider: BppProvider, parsed: bulk.Parsed, *,
                 replace: bool) -> dict[str, int] | list[bulk.LineError]:
    """Write `parsed` into the session (not committed): counts, or the errors that only the database
    can tell (unknown categories, deleting ordered items)."""
    errors: list[bulk.LineError] = []
    imported = {c.id: {"id": c.id, "descriptor": c.descriptor} for c in parsed.categories}
    if replace:
        categories = list(imported.values())
    else:
        categories = [imported.pop(c["id"], c) for c in provider.categories] + list(imported.values())
    known = {c["id"] for c in categories} | parsed.category_ids()
    for entry in parsed.items:
        for category_id in entry.body.category_ids:
            if category_id not in known:
                errors.append(bulk.LineError(
                    entry.line, "category_ids", f"ligne {entry.line}, colonne category_ids : catégorie inconnue "
                                                f"« {category_id} » — ajoutez une ligne category",
                    f"line {entry.line}, column category_ids: unknown category {category_id!r}; add a category row",
                    entry.id))
    existing = {row.id: row for row in (await session.execute(
        select(BppItem).where(BppItem.provider_id == provider.id))).scalars()}
    wanted = {entry.id for entry in parsed.items}
    doomed = sorted(set(existing) - wanted) if replace else []
    if doomed:
        ordered = set((await session.execute(select(BppOrderLine.item_id).where(
            BppOrderLine.provider_id == provider.id, BppOrderLine.item_id.in_(doomed)))).scalars())  # type: ignore[attr-defined]
        for item_id in sorted(ordered):
            errors.append(bulk.LineError(
                None, "id", f"l'article « {item_id} » a des commandes et ne peut pas être supprimé : gardez sa ligne "
                            "(stock 0 pour ne plus le vendre)",
                f"item {item_id!r} has orders and cannot be deleted: keep its row (stock 0 to stop selling it)",
                item_id))
    if errors or parsed.errors:
        return errors
    counts = {"created": 0, "updated": 0, "unchanged": 0, "deleted": len(doomed),
              "categories": len(categories)}
    now = _now()
    if categories != provider.categories:
        provider.categories = categories  # a new list: the JSON column is saved when reassigned
        provider.updated_at = now
    for entry in parsed.items:
        body = entry.body
        descriptor = _item_descriptor(body)
        values = {"descriptor": descriptor, "category_ids": list(body.category_ids), "price": Decimal(body.price),
                  "currency": body.currency, "unit": body.unit, "unit_value": body.unit_value, "stock": body.stock,
                  "tags": list(body.tags) or None,
                  "search_text": item_search_text(descriptor, body.category_ids, categories, body.tags)}
        row = existing.get(entry.id)
        if row is not None and entry.keep_tags:  # an older file, without the tags column
            values["tags"] = row.tags
            values["search_text"] = item_search_text(descriptor, body.category_ids, categories, row.tags)
        if row is None:
            session.add(BppItem(provider_id=provider.id, id=entry.id, updated_at=now, **values))
            counts["created"] += 1
        elif any(getattr(row, column) != value for column, value in values.items()):
            for column, value in values.items():
                setattr(row, column, value)
            row.updated_at = now
            counts["updated"] += 1
        else:
            counts["unchanged"] += 1
    for item_id in set(existing) - wanted:
        row = existing[item_id]
        if item_id in doomed:
            await session.delete(row)
        else:  # kept: a renamed category changes its search text
            text = item_search_text(row.descriptor, row.category_ids, categories, row.tags)
            if text != row.search_text:
                row.search_text = text
    return counts


__all__ = ["bulk_routes"]
