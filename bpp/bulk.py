"""A whole catalogue as one file: CSV (a spreadsheet) or JSON, out and back in.

Merchants keep their shop in a spreadsheet, so the CSV is made for one: one row per category or
item, a `type` column saying which, texts in the four languages side by side.

Choices, each the friendlier one for a merchant with a phone and a spreadsheet:
- Input: UTF-8 with or without BOM (Excel's "CSV UTF-8"); the delimiter is sniffed from the
  header row (`;` from French Excel, `,` elsewhere, or tab).
- Prices: "4.50", "4,50", "4,5", "4", "4,50 €" are all 4.50 EUR (French spreadsheets write a
  decimal comma); more than two decimals is refused, never rounded.
- Lists (category_ids, images, tags) are separated by `|` (also accepted: spaces, or `,` inside a
  cell; for tags `;` too). `tags` takes the item tags of `bpp.catalogue.ITEM_TAGS`: `local`
  (produit péi; `péi` is accepted) and `organic` (`bio` accepted). A file without a `tags` column
  (older exports) leaves the stored tags of existing items as they are.
- Every error is listed, not just the first: `line` is the spreadsheet row (header = row 1; for
  JSON the position in `categories`/`items`, from 1), `column` the CSV column or JSON field,
  `message` in French (the network's language) and `message_en` in English.
- Export: `;` with decimal commas and a BOM by default (French Excel opens it as numbers), or
  `,` with decimal points (`sep=comma`); JSON is exactly the import format, so both round-trip.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from bpp.catalogue import ITEM_TAGS, money
from bpp.merchant_api import CategoryIn, ItemIn
from bpp.text import LANGUAGES

MAX_BYTES = 2 * 1024 * 1024
MAX_LINES = 5000  # categories + items (CSV data rows, JSON entries)

TEXT_FIELDS = ("name", "short_desc", "long_desc")
COLUMNS = ("type", "id", "category_ids",
           *(f"{field_}_{lang}" for lang in LANGUAGES for field_ in TEXT_FIELDS),
           "price", "unit", "unit_value", "stock", "images", "tags")
_ITEM_ONLY = ("category_ids", "price", "unit", "unit_value", "stock", "images", "tags")
# What merchants write in a spreadsheet -> the tag it means (the codes themselves are accepted too).
_TAG_ALIASES = {"bio": "organic", "pei": "local", "péi": "local"}
_TYPES = {"item": "item", "article": "item", "produit": "item",
          "category": "category", "categorie": "category", "catégorie": "category"}
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_PRICE = re.compile(r"^([0-9]{1,9})(?:[.,]([0-9]{1,2}))?$")
_SPLIT = re.compile(r"[|,\s]+")


class TooLarge(Exception):
    """More than MAX_LINES lines: the API answers 413."""


@dataclass
class LineError:
    line: int | None
    column: str
    message: str
    message_en: str
    id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "id": self.id,
                "message": self.message, "message_en": self.message_en}


@dataclass
class Category:
    line: int
    id: str
    descriptor: dict[str, dict[str, Any]]


@dataclass
class Item:
    line: int
    id: str
    body: ItemIn
    keep_tags: bool = False  # the file has no tags column: an existing item keeps its stored tags


@dataclass
class Parsed:
    categories: list[Category] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    # Every (kind, id, line) read, valid or not: duplicates and category references are checked
    # against all rows, so a row with another error still counts.
    seen: list[tuple[str, str, int]] = field(default_factory=list)

    def category_ids(self) -> set[str]:
        return {row_id for kind, row_id, _ in self.seen if kind == "category"}


# ------------------------------------------------------------------------------ reading


def _quote(value: str) -> str:
    return f"« {value} »"


def parse_price(raw: str) -> Decimal | None:
    """"4,50", "4.5", "4", "4,50 €" -> Decimal("4.50"); None when it is not a price."""
    text = raw.replace("€", "").replace("\u00a0", "").replace("\u202f", "").replace(" ", "")
    match = _PRICE.match(text)
    if match is None:
        return None
    return Decimal(f"{match.group(1)}.{(match.group(2) or '0'):0<2}")


def _ids(raw: str) -> list[str]:
    return [part for part in _SPLIT.split(raw.strip()) if part]


def _pydantic_errors(error: ValidationError, line: int, row_id: str, column_of: Any) -> list[LineError]:
    """Pydantic's (English) messages for what our own checks did not already explain."""
    found = []
    for problem in error.errors():
        column = column_of(problem["loc"])
        found.append(LineError(line, column, f"ligne {line}, colonne {column} : valeur refusée — {problem['msg']}",
                               f"line {line}, column {column}: {problem['msg']}", row_id))
    return found


def _descriptor(row: dict[str, str]) -> dict[str, dict[str, str]]:
    texts: dict[str, dict[str, str]] = {}
    for lang in LANGUAGES:
        text = {f: row.get(f"{f}_{lang}", "").strip() for f in TEXT_FIELDS}
        text = {f: v for f, v in text.items() if v}
        if text:
            texts[lang] = text
    return texts


def _csv_column(loc: tuple[Any, ...]) -> str:
    # ("descriptor", "en", "name") -> "name_en"; ("images", 0) -> "images"
    if loc and loc[0] == "descriptor":
        return f"{loc[2]}_{loc[1]}" if len(loc) > 2 else "name_fr"
    return str(loc[0]) if loc else "?"


def _decode(data: bytes) -> str | None:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def parse_csv(data: bytes) -> Parsed:
    parsed = Parsed()
    text = _decode(data)
    if text is None:
        parsed.errors.append(LineError(
            None, "", "le fichier n'est pas en UTF-8 : dans Excel, enregistrez-le en « CSV UTF-8 »",
            "the file is not UTF-8: in Excel, save it as 'CSV UTF-8'"))
        return parsed
    header_line = text.split("\n", 1)[0]
    delimiter = max(";,\t", key=header_line.count)
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    if len(rows) - 1 > MAX_LINES:
        raise TooLarge
    if not rows:
        parsed.errors.append(LineError(1, "", "le fichier est vide : il faut au moins la ligne d'en-tête",
                                       "the file is empty: a header row is needed"))
        return parsed
    header = [name.strip().lower() for name in rows[0]]
    has_tags = "tags" in header
    unknown = [name for name in header if name and name not in COLUMNS]
    for name in unknown:
        parsed.errors.append(LineError(1, name, f"ligne 1 : colonne inconnue {_quote(name)} ; colonnes possibles : "
                                                f"{', '.join(COLUMNS)}",
                                       f"line 1: unknown column {name!r}; known columns: {', '.join(COLUMNS)}"))
    for name in ("type", "id", "name_fr"):
        if name not in header:
            parsed.errors.append(LineError(1, name, f"ligne 1 : la colonne {name} manque",
                                           f"line 1: the column {name} is missing"))
    if parsed.errors:
        return parsed
    for number, cells in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue  # spreadsheets leave empty rows behind
        row = {name: (cells[i] if i < len(cells) else "") for i, name in enumerate(header) if name}
        _csv_row(parsed, number, row, has_tags=has_tags)
    _check_duplicates(parsed)
    return parsed


def _tags(raw: str) -> tuple[list[str], list[str]]:
    """"local;organic", "bio | péi" -> (["local", "organic"], []); unknown words in the second list."""
    tags, unknown = [], []
    for word in re.split(r"[|,;\s]+", raw.strip().lower()):
        tag = _TAG_ALIASES.get(word, word)
        if word and tag not in ITEM_TAGS:
            unknown.append(word)
        elif word and tag not in tags:  # "bio|organic" is one tag, not an error
            tags.append(tag)
    return tags, unknown


def _csv_row(parsed: Parsed, line: int, row: dict[str, str], *, has_tags: bool = True) -> None:
    errors = parsed.errors
    start = len(errors)

    def bad(column: str, fr: str, en: str) -> None:
        errors.append(LineError(line, column, f"ligne {line}, colonne {column} : {fr}",
                                f"line {line}, column {column}: {en}", row_id or None))

    kind_raw, row_id = row.get("type", "").strip(), row.get("id", "").strip()
    kind = _TYPES.get(kind_raw.lower())
    if kind is None:
        bad("type", f"{_quote(kind_raw)} — écrivez item ou category", f"{kind_raw!r}: write item or category")
    if not _ID.match(row_id):
        bad("id", f"{_quote(row_id)} — un identifiant en minuscules, chiffres et tirets (ex. : banane-kg)",
            f"{row_id!r}: lowercase letters, digits and hyphens (e.g. banane-kg)")
    if not row.get("name_fr", "").strip():
        bad("name_fr", "le nom en français est obligatoire", "the French name is required")
    if kind is not None and row_id:
        parsed.seen.append((kind, row_id, line))
    descriptor = _descriptor(row)
    for lang in LANGUAGES:
        if lang in descriptor and "name" not in descriptor[lang] and lang != "fr":
            bad(f"name_{lang}", f"une description en {lang} demande aussi un nom en {lang}",
                f"a {lang} description needs a {lang} name too")
    if kind == "category":
        for column in _ITEM_ONLY:
            if row.get(column, "").strip():
                bad(column, "à laisser vide pour une catégorie", "leave empty for a category")
        if len(errors) == start:
            try:
                body = CategoryIn.model_validate({"descriptor": descriptor})
            except ValidationError as error:
                errors.extend(_pydantic_errors(error, line, row_id, _csv_column))
            else:
                parsed.categories.append(Category(line, row_id, _texts(body.descriptor)))
        return
    if kind != "item":
        return
    raw_price = row.get("price", "").strip()
    price = parse_price(raw_price)
    if price is None:
        bad("price", f"{_quote(raw_price)} n'est pas un prix — écrivez par exemple 4.50 ou 4,50",
            f"{raw_price!r} is not a price: write e.g. 4.50 or 4,50")
    raw_stock = row.get("stock", "").strip()
    if not re.fullmatch(r"[0-9]{1,10}", raw_stock) or int(raw_stock) > 1_000_000_000:
        bad("stock", f"{_quote(raw_stock)} — un nombre entier positif ou 0 (ex. : 12)",
            f"{raw_stock!r}: a whole number, 0 or more (e.g. 12)")
    unit = row.get("unit", "").strip()
    if not unit:
        bad("unit", "l'unité est obligatoire (ex. : kilogram, unit, bottle)",
            "the unit is required (e.g. kilogram, unit, bottle)")
    unit_value = row.get("unit_value", "").strip().replace(",", ".") or "1"
    if not re.fullmatch(r"[0-9]{1,6}(\.[0-9]{1,3})?", unit_value):
        bad("unit_value", f"{_quote(row.get('unit_value', ''))} — une quantité (ex. : 1 ou 0,5)",
            f"{row.get('unit_value', '')!r}: a quantity (e.g. 1 or 0.5)")
    tags, unknown_tags = _tags(row.get("tags", ""))
    for word in unknown_tags:
        bad("tags", f"{_quote(word)} n'est pas une étiquette — écrivez local (produit péi) ou organic (bio), "
                    "séparées par |", f"{word!r} is not a tag: write local and/or organic, separated by |")
    if len(errors) > start:
        return
    try:
        body = ItemIn.model_validate({
            "descriptor": descriptor, "category_ids": _ids(row.get("category_ids", "")),
            "price": money(price) if price is not None else "", "unit": unit, "unit_value": unit_value,
            "stock": int(raw_stock), "images": _ids(row.get("images", "").replace(",", " ")), "tags": tags,
        })
    except ValidationError as error:
        errors.extend(_pydantic_errors(error, line, row_id, _csv_column))
    else:
        parsed.items.append(Item(line, row_id, body, keep_tags=not has_tags))


class _CategoryJson(CategoryIn):
    id: str


class _ItemJson(ItemIn):
    id: str


class _CatalogueJson(BaseModel):
    model_config = ConfigDict(extra="forbid")
    categories: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []


def parse_json(data: bytes) -> Parsed:
    parsed = Parsed()
    text = _decode(data)
    if text is None:
        parsed.errors.append(LineError(None, "", "le JSON doit être en UTF-8", "JSON must be UTF-8"))
        return parsed
    try:
        document = _CatalogueJson.model_validate(json.loads(text))
    except (ValueError, ValidationError) as error:
        parsed.errors.append(LineError(None, "", f"JSON illisible : {error}".splitlines()[0][:300],
                                       f"unreadable JSON: {error}".splitlines()[0][:300]))
        return parsed
    if len(document.categories) + len(document.items) > MAX_LINES:
        raise TooLarge
    for kind, entries in (("categories", document.categories), ("items", document.items)):
        model = _CategoryJson if kind == "categories" else _ItemJson
        for number, entry in enumerate(entries, start=1):
            row_id = str(entry.get("id", ""))
            if row_id:
                parsed.seen.append(("category" if kind == "categories" else "item", row_id, number))
            if not _ID.match(row_id):
                parsed.errors.append(LineError(
                    number, f"{kind}.id", f"{kind} n° {number}, champ id : {_quote(row_id)} — minuscules, chiffres "
                                          "et tirets (ex. : banane-kg)",
                    f"{kind} #{number}, field id: {row_id!r}: lowercase letters, digits and hyphens", row_id or None))
                continue
            try:
                body = model.model_validate(entry)
            except ValidationError as error:
                for problem in error.errors():
                    where = ".".join(str(part) for part in problem["loc"])
                    parsed.errors.append(LineError(
                        number, f"{kind}.{where}", f"{kind} n° {number}, champ {where} : valeur refusée — "
                                                   f"{problem['msg']}",
                        f"{kind} #{number}, field {where}: {problem['msg']}", row_id))
                continue
            if isinstance(body, _CategoryJson):
                parsed.categories.append(Category(number, row_id, _texts(body.descriptor)))
            else:
                parsed.items.append(Item(number, row_id, ItemIn.model_validate(body.model_dump(exclude={"id"}))))
    _check_duplicates(parsed)
    return parsed


def _texts(descriptor: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {lang: text.model_dump(exclude_none=True) for lang, text in descriptor.items()}


def _check_duplicates(parsed: Parsed) -> None:
    first: dict[tuple[str, str], int] = {}
    for kind, row_id, line in parsed.seen:
        if (kind, row_id) in first:
            parsed.errors.append(LineError(
                line, "id", f"ligne {line}, colonne id : {_quote(row_id)} est déjà à la ligne {first[kind, row_id]}",
                f"line {line}, column id: {row_id!r} is already on line {first[kind, row_id]}", row_id))
        first.setdefault((kind, row_id), line)


# ------------------------------------------------------------------------------ writing


def export_rows(categories: list[dict[str, Any]], items: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Spreadsheet rows (no decimal convention yet) from the JSON export of `export_json`."""
    rows = []
    for category in categories:
        row = {"type": "category", "id": category["id"]}
        for lang, text in category["descriptor"].items():
            row |= {f"{f}_{lang}": text[f] for f in TEXT_FIELDS if text.get(f)}
        rows.append(row)
    for item in items:
        row = {"type": "item", "id": item["id"], "category_ids": "|".join(item["category_ids"]),
               "price": item["price"], "unit": item["unit"], "unit_value": item["unit_value"],
               "stock": str(item["stock"]), "images": "|".join(item["images"]),
               "tags": "|".join(item.get("tags") or ())}
        for lang, text in item["descriptor"].items():
            row |= {f"{f}_{lang}": text[f] for f in TEXT_FIELDS if text.get(f)}
        rows.append(row)
    return rows


def to_csv(categories: list[dict[str, Any]], items: list[dict[str, Any]], *, comma: bool) -> bytes:
    """`comma`: `,`-separated with decimal points; otherwise French Excel's `;` and decimal commas."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, delimiter="," if comma else ";", lineterminator="\r\n")
    writer.writeheader()
    for row in export_rows(categories, items):
        if not comma:
            for column in ("price", "unit_value"):
                if column in row:
                    row[column] = row[column].replace(".", ",")
        writer.writerow(row)
    return ("\ufeff" + out.getvalue()).encode()


__all__ = ["COLUMNS", "MAX_BYTES", "MAX_LINES", "Category", "Item", "LineError", "Parsed", "TooLarge",
           "parse_csv", "parse_json", "parse_price", "to_csv"]
