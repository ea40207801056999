"""`make bench`: every benchmark, as a table and as JSON (bench/results/latest.json)."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench import bpp_search, pipeline, signatures, tlog


def main() -> None:
    results = {"signatures": signatures.run(), "pipeline": pipeline.run(), "bpp_search": bpp_search.run(),
               "tlog": tlog.run()}
    table = Table(title="Lakou benchmarks (loopback, this machine)")
    table.add_column("benchmark")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for group, figures in results.items():
        for name, value in figures.items():
            table.add_row(group, name, f"{value:,.1f}" if isinstance(value, float) else str(value))
    Console().print(table)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
