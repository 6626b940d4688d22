#!/usr/bin/env python3
"""What the modern overlay of the raw tables (0001_raw_events.modern.sql) saves on disk, measured on
ClickHouse 26.x in process (chdb): the same generated events (the generators of rollup_cost.py) go into
the raw tables without and with the overlay; after OPTIMIZE … FINAL, bytes on disk per table and the
compressed bytes of the columns the overlay changes. Run with the test virtualenv:

    .state/chdb-venv/bin/python clickhouse/bench/overlay_size.py --rows 1000000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
import rollup_cost  # noqa: E402
import sluice_ch  # noqa: E402

COLUMNS = "('geo', 'engine', 'device', 'url', 'kafka_topic', 'referrer', 'country', 'user_agent')"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="events per kind")
    args = ap.parse_args()
    tables = {}
    columns = {}
    version = ""
    for variant in ("base", "base + modern"):
        db = sluice_ch.ChdbBackend("sluice")
        try:
            version = db.query("SELECT version()").strip()
            _, _, base, overlay = sluice_ch.migrations()[0]
            for statement in sluice_ch.statements(base.read_text()):
                db.query(statement)
            if variant != "base" and overlay is not None:
                for statement in sluice_ch.statements(overlay.read_text()):
                    db.query(statement)
            for table, generator in rollup_cost.GENERATORS.items():
                step = 100_000
                for start in range(0, args.rows, step):
                    db.query(f"INSERT INTO {table} " + generator.format(
                        base=rollup_cost.BASE, span=rollup_cost.SPAN, count=min(step, args.rows - start),
                        start=start))
                db.query(f"OPTIMIZE TABLE {table} FINAL")
                [(size,)] = db.rows("SELECT sum(bytes_on_disk) FROM system.parts WHERE database = 'sluice' "
                                    f"AND active AND table = '{table}'")
                tables[(table, variant)] = int(size)
            for table, column, size in db.rows(
                "SELECT table, name, data_compressed_bytes FROM system.columns WHERE database = 'sluice' "
                f"AND name IN {COLUMNS} ORDER BY table, name"
            ):
                columns[(table, column, variant)] = int(size)
        finally:
            db.close()
    print(f"ClickHouse {version} (chdb), {args.rows:,} events per kind\n")
    print("| table | base | base + modern | change |")
    print("|---|---|---|---|")
    for table in rollup_cost.GENERATORS:
        a, b = tables[(table, "base")], tables[(table, "base + modern")]
        print(f"| {table} | {a / 1e6:.1f} MB | {b / 1e6:.1f} MB | {b / a - 1:+.0%} |")
    print("\n| column | base | base + modern |")
    print("|---|---|---|")
    for (table, column, variant), size in sorted(columns.items()):
        if variant == "base":
            modern = columns[(table, column, "base + modern")]
            print(f"| {table}.{column} | {size / 1e6:.2f} MB | {modern / 1e6:.2f} MB |")


if __name__ == "__main__":
    main()
