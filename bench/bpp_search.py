"""BPP search latency over a large synthetic catalogue, on SQLite and PostgreSQL.

A catalogue of 1,000 Martinique merchants × 100 items (four-language descriptors drawn from a
vocabulary of local products, communes 972xx, shop GPS; every fourth merchant also has a pickup
point in another commune, an `other_locations` entry) is bulk-inserted into the BPP tables of a
scratch database. Then `bpp.search.search_answer` — the query and the rendering the BPP does per
search, with the default cap of `bpp_search_max_items` (500) items per answer — plus
`split_answer` (the pages it would send) is timed in-process for a mix of intents, and compared
with a baseline measured in the same run on the same database: one item fetched by its primary
key through the ORM. Ratios to that baseline are comparable across machines.

`python -m bench.bpp_search --scale 0.1` shrinks the catalogue (100 merchants);
LAKOU_BENCH_SEARCH_SCALE does the same under `make bench`. PostgreSQL is used when reachable at
LAKOU_TEST_POSTGRES_URL (default postgresql+asyncpg://postgres@127.0.0.1:5432/test): a uniquely
named database is created next to it and dropped afterwards; otherwise it is skipped, loudly.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from beckn.models import Context, Intent
from beckn.store.db import create_engine, session_factory, upgrade
from bpp.catalogue import item_search_text
from bpp.search import DEFAULT_MAX_ITEMS, search_answer, split_answer
from bpp.tables import BppItem, BppProvider
from bpp.text import indexed_text

POSTGRES_URL = os.environ.get("LAKOU_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
PAGE_ITEMS = 100  # the default bpp_search_page_items
_BATCH = 2000  # rows per INSERT

# --------------------------------------------------------------------------- vocabulary

# (INSEE code, name, latitude, longitude) of the 34 communes of Martinique (town centres, ~0.01°).
COMMUNES: list[tuple[str, str, float, float]] = [
    ("97201", "L'Ajoupa-Bouillon", 14.816, -61.141), ("97202", "Les Anses-d'Arlet", 14.489, -61.081),
    ("97203", "Basse-Pointe", 14.871, -61.115), ("97204", "Le Carbet", 14.710, -61.180),
    ("97205", "Case-Pilote", 14.643, -61.137), ("97206", "Le Diamant", 14.476, -61.030),
    ("97207", "Ducos", 14.575, -60.975), ("97208", "Fonds-Saint-Denis", 14.733, -61.118),
    ("97209", "Fort-de-France", 14.602, -61.067), ("97210", "Le François", 14.616, -60.903),
    ("97211", "Grand'Rivière", 14.873, -61.177), ("97212", "Gros-Morne", 14.715, -61.005),
    ("97213", "Le Lamentin", 14.613, -60.999), ("97214", "Le Lorrain", 14.833, -61.057),
    ("97215", "Macouba", 14.874, -61.143), ("97216", "Le Marigot", 14.813, -61.036),
    ("97217", "Le Marin", 14.469, -60.868), ("97218", "Le Morne-Rouge", 14.771, -61.133),
    ("97219", "Le Prêcheur", 14.801, -61.222), ("97220", "Rivière-Pilote", 14.484, -60.902),
    ("97221", "Rivière-Salée", 14.527, -60.974), ("97222", "Le Robert", 14.678, -60.941),
    ("97223", "Saint-Esprit", 14.561, -60.934), ("97224", "Saint-Joseph", 14.671, -61.040),
    ("97225", "Saint-Pierre", 14.744, -61.176), ("97226", "Sainte-Anne", 14.433, -60.882),
    ("97227", "Sainte-Luce", 14.469, -60.925), ("97228", "Sainte-Marie", 14.784, -60.993),
    ("97229", "Schœlcher", 14.614, -61.091), ("97230", "La Trinité", 14.739, -60.963),
    ("97231", "Les Trois-Îlets", 14.538, -61.038), ("97232", "Le Vauclin", 14.545, -60.838),
    ("97233", "Le Morne-Vert", 14.703, -61.134), ("97234", "Bellefontaine", 14.669, -61.159),
]

# category id -> names in fr, en, es, de
CATEGORIES: dict[str, tuple[str, str, str, str]] = {
    "fruits": ("Fruits", "Fruit", "Frutas", "Obst"),
    "legumes": ("Légumes", "Vegetables", "Verduras", "Gemüse"),
    "tubercules": ("Tubercules", "Root vegetables", "Tubérculos", "Knollengemüse"),
    "epices": ("Épices et herbes", "Spices and herbs", "Especias y hierbas", "Gewürze und Kräuter"),
    "poisson": ("Poissons et fruits de mer", "Fish and seafood", "Pescado y marisco", "Fisch und Meeresfrüchte"),
    "boulangerie": ("Boulangerie et pâtisserie", "Bakery and pastry", "Panadería y pastelería", "Bäckerei"),
    "boissons": ("Rhums et boissons", "Rum and drinks", "Rones y bebidas", "Rum und Getränke"),
    "artisanat": ("Artisanat", "Crafts", "Artesanía", "Kunsthandwerk"),
}

# (category, relative frequency, fr, en, es, de, unit): common staples weigh more than rarities,
# so text searches range from a handful of items to a tenth of the catalogue.
PRODUCTS: list[tuple[str, float, str, str, str, str, str]] = [
    ("fruits", 30, "Banane", "Banana", "Plátano", "Banane", "kilogram"),
    ("fruits", 12, "Ananas Victoria", "Victoria pineapple", "Piña Victoria", "Victoria-Ananas", "unit"),
    ("fruits", 10, "Mangue Julie", "Julie mango", "Mango Julie", "Julie-Mango", "kilogram"),
    ("fruits", 8, "Goyave", "Guava", "Guayaba", "Guave", "kilogram"),
    ("fruits", 8, "Fruit de la passion", "Passion fruit", "Maracuyá", "Maracuja", "kilogram"),
    ("fruits", 6, "Corossol", "Soursop", "Guanábana", "Stachelannone", "unit"),
    ("fruits", 6, "Noix de coco", "Coconut", "Coco", "Kokosnuss", "unit"),
    ("fruits", 4, "Pomme-cannelle", "Sugar apple", "Anón", "Zimtapfel", "kilogram"),
    ("fruits", 3, "Carambole", "Star fruit", "Carambola", "Sternfrucht", "kilogram"),
    ("fruits", 1, "Surette", "Otaheite gooseberry", "Grosella", "Stachelbeerbaum", "kilogram"),
    ("legumes", 20, "Banane plantain", "Plantain", "Plátano macho", "Kochbanane", "kilogram"),
    ("legumes", 10, "Christophine", "Chayote", "Chayote", "Chayote", "kilogram"),
    ("legumes", 8, "Giraumon", "West Indian pumpkin", "Calabaza antillana", "Karibischer Kürbis", "kilogram"),
    ("legumes", 6, "Gombo", "Okra", "Quimbombó", "Okra", "kilogram"),
    ("legumes", 6, "Pois d'Angole", "Pigeon peas", "Guandú", "Straucherbse", "kilogram"),
    ("legumes", 3, "Fruit à pain", "Breadfruit", "Fruta de pan", "Brotfrucht", "unit"),
    ("tubercules", 10, "Igname", "Yam", "Ñame", "Yamswurzel", "kilogram"),
    ("tubercules", 8, "Patate douce", "Sweet potato", "Batata", "Süßkartoffel", "kilogram"),
    ("tubercules", 6, "Dachine", "Taro", "Malanga", "Taro", "kilogram"),
    ("tubercules", 3, "Manioc", "Cassava", "Yuca", "Maniok", "kilogram"),
    ("epices", 10, "Piment végétarien", "Seasoning pepper", "Ají dulce", "Würzpaprika", "unit"),
    ("epices", 8, "Cive", "Spring onion", "Cebolleta", "Frühlingszwiebel", "unit"),
    ("epices", 6, "Bois d'Inde", "Bay rum leaves", "Malagueta", "Westindischer Lorbeer", "unit"),
    ("epices", 5, "Vanille", "Vanilla", "Vainilla", "Vanille", "unit"),
    ("epices", 5, "Cannelle", "Cinnamon", "Canela", "Zimt", "unit"),
    ("epices", 4, "Colombo en poudre", "Colombo curry powder", "Polvo de colombo", "Colombo-Pulver", "unit"),
    ("epices", 2, "Roucou", "Annatto", "Achiote", "Annatto", "unit"),
    ("poisson", 12, "Thon", "Tuna", "Atún", "Thunfisch", "kilogram"),
    ("poisson", 8, "Daurade coryphène", "Mahi-mahi", "Dorado", "Goldmakrele", "kilogram"),
    ("poisson", 6, "Marlin bleu", "Blue marlin", "Marlín azul", "Blauer Marlin", "kilogram"),
    ("poisson", 5, "Vivaneau", "Red snapper", "Pargo", "Schnapper", "kilogram"),
    ("poisson", 4, "Lambi", "Queen conch", "Caracol rosado", "Fechterschnecke", "kilogram"),
    ("poisson", 3, "Ouassous", "Freshwater prawns", "Camarones de río", "Süßwassergarnelen", "kilogram"),
    ("poisson", 1, "Chatrou", "Octopus", "Pulpo", "Oktopus", "kilogram"),
    ("poisson", 1, "Oursin blanc", "White sea urchin", "Erizo blanco", "Weißer Seeigel", "unit"),
    ("boulangerie", 15, "Pain au beurre", "Butter bread", "Pan de mantequilla", "Butterbrot", "unit"),
    ("boulangerie", 8, "Kassav coco", "Coconut cassava bread", "Casabe de coco", "Kokos-Kassava", "unit"),
    ("boulangerie", 5, "Tourment d'amour", "Coconut tart", "Tarta de coco", "Kokostörtchen", "unit"),
    ("boulangerie", 5, "Chodo", "Creole custard", "Natilla criolla", "Kreolische Creme", "unit"),
    ("boulangerie", 3, "Pâté salé", "Savoury pastry", "Empanada", "Pastete", "unit"),
    ("boissons", 10, "Rhum agricole blanc", "White agricultural rum", "Ron agrícola blanco",
     "Weißer Agrarrum", "bottle"),
    ("boissons", 6, "Rhum vieux", "Aged rum", "Ron añejo", "Alter Rum", "bottle"),
    ("boissons", 6, "Jus de canne", "Sugar cane juice", "Jugo de caña", "Zuckerrohrsaft", "bottle"),
    ("boissons", 4, "Shrubb", "Shrubb orange liqueur", "Licor Shrubb", "Shrubb-Likör", "bottle"),
    ("boissons", 2, "Sirop de batterie", "Cane syrup", "Melaza de caña", "Zuckerrohrsirup", "bottle"),
    ("artisanat", 4, "Panier en bakoua", "Bakoua basket", "Cesta de bakoua", "Bakoua-Korb", "unit"),
    ("artisanat", 3, "Poterie des Trois-Îlets", "Trois-Îlets pottery", "Cerámica de Trois-Îlets",
     "Keramik aus Trois-Îlets", "unit"),
    ("artisanat", 1, "Madras brodé", "Embroidered madras", "Madrás bordado", "Bestickter Madras", "unit"),
]

# What the merchant adds to a product's name (fr, en, es, de).
QUALIFIERS: list[tuple[str, str, str, str]] = [
    ("", "", "", ""), ("bio", "organic", "ecológico", "Bio"), ("péi", "local", "local", "einheimisch"),
    ("extra", "premium", "extra", "Premium"), ("du jardin", "garden-grown", "de huerto", "aus dem Garten"),
]

SHOP_KINDS: list[tuple[tuple[str, str, str, str], list[str]]] = [
    (("Jardin créole", "Creole garden", "Huerto criollo", "Kreolischer Garten"),
     ["fruits", "legumes", "tubercules", "epices"]),
    (("Pêcherie", "Fishmonger", "Pescadería", "Fischhandel"), ["poisson", "epices"]),
    (("Boulangerie", "Bakery", "Panadería", "Bäckerei"), ["boulangerie", "boissons"]),
    (("Épicerie", "Grocery", "Tienda", "Lebensmittelladen"),
     ["fruits", "legumes", "epices", "boissons", "boulangerie"]),
    (("Distillerie", "Distillery", "Destilería", "Brennerei"), ["boissons", "artisanat"]),
    (("Marché", "Market stall", "Puesto", "Marktstand"), list(CATEGORIES)),
]

LANGS = ("fr", "en", "es", "de")


def _slug(text_: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in indexed_text([text_]).strip()).strip("-")


def catalogue_rows(providers: int, items_per_provider: int, seed: int = 972) -> tuple[list[dict[str, Any]],
                                                                                     list[dict[str, Any]]]:
    """Rows for `bpp_provider` and `bpp_item`, deterministic for a given seed."""
    rng = random.Random(seed)
    # Pickup points draw from their own stream, so that the rest of the catalogue is the same as
    # before they were added (figures stay comparable across versions).
    pickup_rng = random.Random(seed + 1)
    now = datetime.now(UTC)
    provider_rows: list[dict[str, Any]] = []
    item_rows: list[dict[str, Any]] = []
    for n in range(providers):
        code, commune, lat, lon = COMMUNES[n % len(COMMUNES)]
        kind, kind_categories = SHOP_KINDS[rng.randrange(len(SHOP_KINDS))]
        provider_id = f"m{n:04d}-{_slug(commune)}"[:64]
        descriptor = {lang: {"name": f"{kind[i]} {commune} {n}",
                             "short_desc": f"{kind[i]}, {commune}"} for i, lang in enumerate(LANGS)}
        categories = [{"id": c, "descriptor": {lang: {"name": CATEGORIES[c][i]} for i, lang in enumerate(LANGS)}}
                      for c in kind_categories]
        # Shops scatter within ~3 km of their town centre.
        gps = f"{lat + rng.uniform(-0.025, 0.025):.4f}, {lon + rng.uniform(-0.025, 0.025):.4f}"
        other_locations = None
        if n % 4 == 3:  # a pickup point in another commune, found by its commune and GPS too
            o_code, o_commune, o_lat, o_lon = COMMUNES[(n + 7) % len(COMMUNES)]
            other_locations = [{
                "id": f"{provider_id}-relais"[:64],
                "gps": f"{o_lat + pickup_rng.uniform(-0.025, 0.025):.4f}, "
                       f"{o_lon + pickup_rng.uniform(-0.025, 0.025):.4f}",
                "address": f"Relais, {o_code} {o_commune}",
                "city": {"code": f"insee:{o_code}", "name": o_commune}, "area_code": o_code}]
        provider_rows.append({
            "id": provider_id, "descriptor": descriptor,
            "location": {"id": f"{provider_id}-shop", "gps": gps, "address": f"Bourg, {code} {commune}",
                         "city": {"code": f"insee:{code}", "name": commune}, "area_code": code},
            "city_code": f"insee:{code}", "other_locations": other_locations, "categories": categories,
            "fulfillment_types": ["Self-Pickup", "Delivery"] if n % 3 == 0 else ["Self-Pickup"],
            "search_text": indexed_text(text_["name"] for text_ in descriptor.values()),
            "created_at": now, "updated_at": now,
        })
        offered = [p for p in PRODUCTS if p[0] in kind_categories]
        weights = [p[1] for p in offered]
        for i in range(items_per_provider):
            category, _, *names, unit = rng.choices(offered, weights)[0]
            qualifier = QUALIFIERS[rng.randrange(len(QUALIFIERS))]
            item_descriptor = {
                lang: {"name": f"{names[k]} {qualifier[k]}".strip(),
                       "short_desc": f"{names[k]} — {commune}"} for k, lang in enumerate(LANGS)}
            item_rows.append({
                "provider_id": provider_id, "id": f"item-{i:03d}", "descriptor": item_descriptor,
                "category_ids": [category], "price": Decimal(rng.randrange(100, 4000)) / 100,
                "currency": "EUR", "unit": unit, "unit_value": "1", "stock": rng.randrange(0, 200),
                "search_text": item_search_text(item_descriptor, [category], categories),
                "updated_at": now,
            })
    return provider_rows, item_rows


async def load(sessions: async_sessionmaker[AsyncSession], providers: list[dict[str, Any]],
               items: list[dict[str, Any]]) -> None:
    """Bulk-insert the rows (Core executemany), then refresh planner statistics."""
    async with sessions() as session:
        for table, rows in ((BppProvider.__table__, providers), (BppItem.__table__, items)):
            for start in range(0, len(rows), _BATCH):
                await session.execute(insert(table), rows[start:start + _BATCH])
        await session.commit()
        await session.execute(text("ANALYZE"))
        await session.commit()


# --------------------------------------------------------------------------- intents

FORT_DE_FRANCE = "14.6020, -61.0670"


def _context(city: str = "std:972") -> Context:
    return Context.model_validate({
        "domain": "retail", "action": "search", "version": "1.1.0",
        "location": {"country": {"code": "MTQ"}, "city": {"code": city}},
        "bap_id": "bap.bench.lakou", "bap_uri": "https://bap.bench.lakou/beckn",
        "transaction_id": str(uuid.uuid4()), "message_id": str(uuid.uuid4()),
        "timestamp": "2026-11-23T10:00:00.000Z", "ttl": "PT30S"})


# name -> (context city code, intent): the mix a buyer app sends.
INTENTS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "selective_text": ("std:972", {"descriptor": {"name": "chatrou"}}),
    "two_words": ("std:972", {"descriptor": {"name": "mangue bio"}}),
    "common_text": ("std:972", {"descriptor": {"name": "banane"}}),
    "category": ("std:972", {"category": {"id": "poisson"}}),
    "text_in_city": ("insee:97209", {"descriptor": {"name": "banane"}}),
    "city": ("insee:97209", None),
    "gps_circle_2km": ("std:972", {"fulfillment": {"stops": [{"location": {"circle": {
        "gps": FORT_DE_FRANCE, "radius": {"value": "2", "unit": "km"}}}}]}}),
    "empty_intent": ("std:972", {}),
}


# --------------------------------------------------------------------------- timing


def _quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _samples(op: Callable[[], Awaitable[Any]], repeats: int, budget_s: float) -> list[float]:
    """Up to `repeats` timings of `op`, stopping early (after at least 3) once `budget_s` is spent."""
    start = time.perf_counter()
    await op()  # warm-up: connection pool, statement caches
    first = time.perf_counter() - start
    # A search slower than half a second is dominated by its own work, not by warm caches: its
    # first run counts, which saves a whole run of the slowest intents.
    samples: list[float] = [first] if first > 0.5 else []
    spent = sum(samples)
    while len(samples) < repeats and (len(samples) < 3 or spent < budget_s):
        start = time.perf_counter()
        await op()
        samples.append(time.perf_counter() - start)
        spent += samples[-1]
    return samples


async def measure(url: str, providers: int, items_per_provider: int, repeats: int,
                  budget_s: float) -> dict[str, float | int]:
    """Load the catalogue at `url` (an empty database) and time every intent against it."""
    await upgrade(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    out: dict[str, float | int] = {}
    try:
        start = time.perf_counter()
        provider_rows, item_rows = catalogue_rows(providers, items_per_provider)
        await load(sessions, provider_rows, item_rows)
        out["load_s"] = time.perf_counter() - start
        out["items"] = len(item_rows)

        probe = item_rows[len(item_rows) // 2]
        # A server does not hold its catalogue as Python objects: drop the million-odd objects of
        # the rows, whose full garbage collections would otherwise add ~200 ms pauses to the timings.
        del provider_rows, item_rows
        gc.collect()

        async def by_id() -> None:
            async with sessions() as session:
                found = await session.execute(select(BppItem).where(
                    BppItem.provider_id == probe["provider_id"], BppItem.id == probe["id"]))
                assert found.scalar_one() is not None

        base = await _samples(by_id, max(repeats, 200), budget_s)
        out["baseline_by_id_p50_ms"] = _quantile(base, 0.5) * 1e3
        base_p50 = _quantile(base, 0.5)

        for name, (city, intent_json) in INTENTS.items():
            context = _context(city)
            intent = Intent.model_validate(intent_json) if intent_json is not None else None
            answer: dict[str, Any] = {}

            async def search(context: Context = context, intent: Intent | None = intent) -> None:
                nonlocal answer
                async with sessions() as session:
                    answer = await search_answer(session, context, intent)
                split_answer(answer, PAGE_ITEMS)

            samples = await _samples(search, repeats, budget_s)
            assert "message" in answer, answer
            providers_found = answer["message"]["catalog"]["providers"]
            found = sum(len(p["items"]) for p in providers_found)
            p50, p95 = _quantile(samples, 0.5), _quantile(samples, 0.95)
            out[f"{name}_items"] = found
            out[f"{name}_callbacks"] = len(split_answer(answer, PAGE_ITEMS))
            out[f"{name}_p50_ms"] = p50 * 1e3
            out[f"{name}_p95_ms"] = p95 * 1e3
            out[f"{name}_p50_ratio"] = p50 / base_p50
            out[f"{name}_samples"] = len(samples)
    finally:
        await engine.dispose()
    return out


# --------------------------------------------------------------------------- PostgreSQL scratch db


def _admin_dsn() -> str:
    return POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")


async def _pg_execute(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_admin_dsn(), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _measure_postgres(providers: int, items_per_provider: int, repeats: int,
                      budget_s: float) -> dict[str, float | int] | None:
    name = f"lakou_bench_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_pg_execute(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server means "no server"
        print(f"bpp_search: SKIPPING POSTGRESQL, not reachable at {_admin_dsn()}: {exc!r}", file=sys.stderr)
        return None
    try:
        url = f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}"
        return asyncio.run(measure(url, providers, items_per_provider, repeats, budget_s))
    finally:
        asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def run(scale: float | None = None, *, items_per_provider: int = 100, repeats: int = 30,
        budget_s: float = 8.0, postgres: bool = True) -> dict[str, float | int]:
    """Figures for SQLite (`sqlite_*`) and, when reachable, PostgreSQL (`postgres_*`).

    `scale` 1.0 is 1,000 merchants (100k items); default from LAKOU_BENCH_SEARCH_SCALE, else 1.0.
    `budget_s` caps the time spent timing one intent (slow intents get fewer samples, at least 3).
    """
    if scale is None:
        scale = float(os.environ.get("LAKOU_BENCH_SEARCH_SCALE", "1"))
    providers = max(1, round(1000 * scale))
    results: dict[str, float | int] = {"providers": providers, "items_per_provider": items_per_provider}
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = asyncio.run(measure(f"sqlite+aiosqlite:///{tmp}/bench.db", providers, items_per_provider,
                                     repeats, budget_s))
    results.update({f"sqlite_{k}": v for k, v in sqlite.items()})
    if postgres:
        pg = _measure_postgres(providers, items_per_provider, repeats, budget_s)
        if pg is not None:
            results.update({f"postgres_{k}": v for k, v in pg.items()})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=None,
                        help="1.0 = 1,000 merchants x 100 items (default: LAKOU_BENCH_SEARCH_SCALE or 1)")
    parser.add_argument("--repeats", type=int, default=30, help="timed searches per intent (at most)")
    parser.add_argument("--budget", type=float, default=8.0, help="seconds of timing per intent (at most)")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    # Capped answers are logged at info level: keep the table readable.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    figures = run(args.scale, repeats=args.repeats, budget_s=args.budget, postgres=not args.no_postgres)
    print(f"search over {figures['providers'] * figures['items_per_provider']:,} items, "
          f"answers capped at {DEFAULT_MAX_ITEMS} items")
    for backend in ("sqlite", "postgres"):
        if f"{backend}_items" not in figures:
            continue
        print(f"\n{backend}: load {figures[f'{backend}_load_s']:.1f} s, "
              f"baseline (item by id) p50 {figures[f'{backend}_baseline_by_id_p50_ms']:.2f} ms")
        print(f"{'intent':<16}{'items':>8}{'pages':>7}{'p50 ms':>10}{'p95 ms':>10}{'p50 ratio':>11}{'n':>5}")
        for name in INTENTS:
            f = {k: figures[f"{backend}_{name}_{k}"] for k in
                 ("items", "callbacks", "p50_ms", "p95_ms", "p50_ratio", "samples")}
            print(f"{name:<16}{f['items']:>8,}{f['callbacks']:>7}{f['p50_ms']:>10.1f}{f['p95_ms']:>10.1f}"
                  f"{f['p50_ratio']:>11.0f}{f['samples']:>5}")


if __name__ == "__main__":
    main()
