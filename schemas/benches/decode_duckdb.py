#!/usr/bin/env python3
"""DuckDB's read_json on the decode bench's messages, one thread: the decoder's peer.

    KVLAKE_DUMP_MESSAGES=/tmp/kv cargo bench -p kvlake-schemas --bench decode
    python3 schemas/benches/decode_duckdb.py /tmp/kv/envelope.json [/tmp/kv/out.parquet]

Times, median of 5: reading the envelopes into a DuckDB table of one row per record
(`unnest(records, recursive := true)`, every field a column), and with a second argument
the same plus a zstd Parquet file of it. Prints MB/s of message bytes.
"""

import os
import statistics
import sys
import time

import duckdb


def main():
    path = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else None
    size = os.path.getsize(path)
    con = duckdb.connect()
    con.execute("SET threads = 1")
    src = (
        f"SELECT unnest(records, recursive := true) FROM "
        f"read_json('{path}', format = 'newline_delimited', maximum_object_size = 16777216)"
    )
    runs = {"decode": [], "decode+parquet": []}
    for _ in range(5):
        con.execute("DROP TABLE IF EXISTS t")
        t = time.perf_counter()
        con.execute(f"CREATE TABLE t AS {src}")
        runs["decode"].append(time.perf_counter() - t)
        if out:
            t = time.perf_counter()
            con.execute(f"COPY ({src}) TO '{out}' (FORMAT parquet, COMPRESSION zstd)")
            runs["decode+parquet"].append(time.perf_counter() - t)
    rows = con.execute("SELECT count(*) FROM t").fetchone()[0]
    for name, secs in runs.items():
        if secs:
            m = statistics.median(secs)
            print(f"duckdb {name}: {rows} rows, {size / 1e6:.1f} MB, median {m * 1e3:.1f} ms, {size / m / 1e6:.0f} MB/s")


if __name__ == "__main__":
    main()
