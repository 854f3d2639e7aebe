#!/usr/bin/env python3
"""The cold path's SQL definitions on DuckDB, for the cold-path benchmark (cold-bench).

Reads the manifest cold-bench writes (the committed raw files, the definitions with their
`{{name}}` placeholders already filled in by kvlake's own substitution, the sort keys,
the output folder), then does what `kvlake cold` does on a full run:

- `raw` = read_parquet([committed raw files]) (no Hive columns: exactly the file schema),
- `events` = the view of events.sql over it,
- each definition in kvlake's order materialized with CREATE TABLE ... AS (later ones read
  earlier ones), then written sorted by date and the table's sort keys as zstd Parquet,
  partitioned by date (COPY ... PARTITION_BY (date)).

Prints one JSON line: seconds and rows per definition. Timestamps are taken in UTC (the
session time zone decides CAST(time AS DATE) and EXTRACT on TIMESTAMPTZ in DuckDB).

    python3 benches/cold_duckdb.py /var/tmp/kvlake-bench/duckdb-manifest.json
"""

import json
import os
import shutil
import sys
import time

import duckdb

# Textual shims applied to the definitions before DuckDB sees them: (what, by what, why).
# Empty when DuckDB takes the SQL files as they are.
SHIMS = []


def shim(sql):
    for old, new, _why in SHIMS:
        sql = sql.replace(old, new)
    return sql


def quote(s):
    return "'" + s.replace("'", "''") + "'"


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: cold_duckdb.py MANIFEST.json")
    with open(sys.argv[1]) as f:
        m = json.load(f)
    started = time.perf_counter()
    out = m["out"]
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    tmp = m.get("temp_directory")
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET threads = {int(m['threads'])}")
    con.execute("SET preserve_insertion_order = false")
    if tmp:
        os.makedirs(tmp, exist_ok=True)
        con.execute(f"SET temp_directory = {quote(tmp)}")
    files = ", ".join(quote(p) for p in m["raw_files"])
    con.execute(
        f"CREATE VIEW raw AS SELECT * FROM read_parquet([{files}], hive_partitioning = false)"
    )
    con.execute(f"CREATE VIEW events AS {shim(m['events_sql'])}")
    setup = time.perf_counter() - started
    tables = []
    for t in m["tables"]:
        name = t["name"]
        t0 = time.perf_counter()
        try:
            con.execute(f"CREATE TABLE {name} AS {shim(t['sql'])}")
        except duckdb.Error as e:
            print(f"cold_duckdb: DuckDB rejects {name}.sql: {e}", file=sys.stderr)
            raise
        computed = time.perf_counter() - t0
        (rows,) = con.execute(f"SELECT COUNT(*) FROM {name}").fetchone()
        order = ", ".join(["date"] + list(t["sort"]))
        target = quote(os.path.join(out, name))
        con.execute(
            f"COPY (SELECT * FROM {name} ORDER BY {order}) TO {target} "
            "(FORMAT parquet, PARTITION_BY (date), COMPRESSION zstd, COMPRESSION_LEVEL 3)"
        )
        seconds = time.perf_counter() - t0
        print(
            f"cold_duckdb: {name}: {rows} rows, {computed:.1f} s to compute, "
            f"{seconds - computed:.1f} s to write",
            file=sys.stderr,
        )
        tables.append(
            {"name": name, "rows": rows, "seconds": seconds, "compute_seconds": computed}
        )
    print(
        json.dumps(
            {
                "setup_seconds": setup,
                "tables": tables,
                "seconds": time.perf_counter() - started,
                "shims": [w for _, _, w in SHIMS],
                "duckdb": duckdb.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
