"""The search and transaction-log benchmarks run end to end at a tiny scale (no timing assertions: figures only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench import bpp_search, tlog

ROOT = Path(__file__).resolve().parent.parent


def test_search_bench_loads_the_catalogue_and_answers_every_intent() -> None:
    # 2 merchants x 100 items, SQLite only (PostgreSQL is covered by the storage tests).
    figures = bpp_search.run(0.002, repeats=2, budget_s=0.1, postgres=False)
    assert figures["providers"] == 2 and figures["sqlite_items"] == 200
    # With no criteria the answer is the whole catalogue, split into pages of 100 items.
    assert figures["sqlite_empty_intent_items"] == 200 and figures["sqlite_empty_intent_callbacks"] == 2
    # A rarer word finds fewer items than a staple; a commune narrows to its own merchants (none here
    # but the two in L'Ajoupa-Bouillon and Les Anses-d'Arlet, so Fort-de-France finds nothing).
    assert figures["sqlite_selective_text_items"] <= figures["sqlite_common_text_items"] <= 200
    assert figures["sqlite_city_items"] == 0
    for name in bpp_search.INTENTS:
        assert figures[f"sqlite_{name}_samples"] >= 2
        assert 0 < figures[f"sqlite_{name}_p50_ms"] <= figures[f"sqlite_{name}_p95_ms"]


def test_search_bench_command_prints_a_table() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.bpp_search", "--scale", "0.002", "--repeats", "2", "--budget", "0.1",
         "--no-postgres"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "search over 200 items" in done.stdout
    assert "empty_intent" in done.stdout and "postgres" not in done.stdout


def test_tlog_bench_appends_proves_and_compares_the_pipeline_with_and_without_the_log() -> None:
    # A 2,000-leaf tree and 200 pipeline messages each way, SQLite only.
    figures = tlog.run(0.002, postgres=False, messages=200)
    for size in tlog.BATCH_SIZES:
        assert figures[f"sqlite_append_batch{size}_per_s"] > 0
    # The warm-up append plus every batch is in the log.
    assert figures["sqlite_append_entries"] == 1 + 20 + 2 * 64 + 2 * 256
    # The bulk-loaded tree is the one the log serves, and every proof drawn from it verified
    # (verification raises on a bad proof, so a count short of the samples would mean a bug here).
    assert figures["sqlite_proof_leaves"] == 2000 and figures["sqlite_proof_root_matches"] == 1
    assert figures["sqlite_inclusion_verified"] == 20
    assert 1 <= figures["sqlite_consistency_verified"] <= 20  # distinct random old sizes
    for kind in ("inclusion", "consistency"):
        assert 0 < figures[f"sqlite_{kind}_p50_ms"] <= figures[f"sqlite_{kind}_p95_ms"]
        assert figures[f"sqlite_{kind}_verify_p50_us"] > 0
    assert figures["sqlite_pipeline_messages"] == 200
    assert figures["sqlite_pipeline_log_off_msgs_per_s"] > 0 and figures["sqlite_pipeline_log_on_msgs_per_s"] > 0
    assert figures["sqlite_pipeline_log_on_ratio"] > 0
    assert not any(name.startswith("postgres_") for name in figures)
