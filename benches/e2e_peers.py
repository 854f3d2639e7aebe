#!/usr/bin/env python3
"""The e2e harness's peers: the same envelope JSON lines kvlake read from the broker,
turned into zstd Parquet records by DuckDB (1 thread) and by PySpark (local[1]).

Each peer runs `runs` times on the same file; prints one JSON line with the wall
seconds of every run, the CPU seconds of the DuckDB runs (this process), the rows
written, and PySpark's session start-up (kept apart from its job time).

    python3 benches/e2e_peers.py corpus.jsonl out-dir [runs] [--no-spark]
"""

import json
import os
import resource
import shutil
import sys
import time


def cpu_self():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def duckdb_runs(corpus, out, runs):
    import duckdb

    walls, cpus, rows = [], [], 0
    for i in range(runs):
        target = os.path.join(out, f"duckdb-{i}.parquet")
        con = duckdb.connect()
        con.execute("SET threads = 1")
        c0, t0 = cpu_self(), time.perf_counter()
        con.execute(
            "COPY (SELECT unnest(records, recursive := true) FROM "
            f"read_json('{corpus}', format = 'newline_delimited')) "
            f"TO '{target}' (FORMAT parquet, COMPRESSION zstd)"
        )
        walls.append(time.perf_counter() - t0)
        cpus.append(cpu_self() - c0)
        rows = con.execute(f"SELECT count(*) FROM read_parquet('{target}')").fetchone()[0]
        con.close()
        os.remove(target)
    return {"wall_s": walls, "cpu_s": cpus, "rows": rows}


def spark_runs(corpus, out, runs):
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import col, explode

    t0 = time.perf_counter()
    spark = (
        SparkSession.builder.master("local[1]")
        .appName("kvlake-e2e-peer")
        .config("spark.driver.memory", "2g")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.parquet.compression.codec", "zstd")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    startup = time.perf_counter() - t0
    walls, rows = [], 0
    for i in range(runs):
        target = os.path.join(out, f"spark-{i}")
        t0 = time.perf_counter()
        df = spark.read.json(corpus).select(explode(col("records")).alias("r")).select("r.*")
        df.write.mode("overwrite").parquet(target)
        walls.append(time.perf_counter() - t0)
        rows = spark.read.parquet(target).count()
        shutil.rmtree(target, ignore_errors=True)
    spark.stop()
    return {"wall_s": walls, "rows": rows, "startup_s": startup}


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    corpus, out = args[0], args[1]
    runs = int(args[2]) if len(args) > 2 else 3
    os.makedirs(out, exist_ok=True)
    result = {"duckdb": duckdb_runs(corpus, out, runs)}
    if "--no-spark" not in sys.argv:
        result["pyspark"] = spark_runs(corpus, out, runs)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
