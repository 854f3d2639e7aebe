#!/usr/bin/env python3
"""kvlake's cold path on Spark: the same SQL definitions as `kvlake cold`, for lakes that
outgrow one machine (Synapse, Fabric, Databricks, any Spark 3.4+ cluster).

    spark-submit kvlake_cold.py --lake <path or abfss:// URL> [--settings kvlake.toml]
                                [--output <dir, default: the lake>] [--sql <dir>]

One full run over every committed day: replays the raw table's Delta log
(`raw/_delta_log`), takes exactly the files it lists (never a half-written batch, never
a file a compaction replaced), runs `coldpath/sql/*.sql` unmodified with the `{{name}}` values of
`coldpath/sql/defaults.toml` (overlaid by --settings), and writes
`<output>/agg/<table>/date=YYYY-MM-DD/` (Parquet, partition `date`, dynamic partition
overwrite: days this run computes are replaced, other days are left as they are).
"""

import argparse
import datetime
import json
import os
import re
import sys
import urllib.parse

try:
    import tomllib  # Python 3.11+
except ModuleNotFoundError:  # Python 3.10 (Synapse 3.4, older Databricks runtimes)
    import tomli as tomllib

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

HERE = os.path.dirname(os.path.abspath(__file__))

# The definitions in the order `kvlake cold` runs them, with their columns (`date` first)
# and row order, as in coldpath/src/definitions.rs. "daily" tables read the raw events of
# the days they cover; "history" tables read the daily tables' whole history.
ANOMALY_COLUMNS = [
    ("date", "date"),
    ("kind", "string"),
    ("subject_type", "string"),
    ("subject", "string"),
    ("vault_name", "string"),
    ("identity", "string"),
    ("ip", "string"),
    ("window_start", "timestamp"),
    ("window_end", "timestamp"),
    ("observed", "double"),
    ("baseline", "double"),
    ("score", "double"),
    ("description", "string"),
]

TABLES = [
    (
        "vault_daily",
        "daily",
        ["vault_name", "operation_name", "result_class"],
        [
            ("date", "date"),
            ("vault_name", "string"),
            ("operation_name", "string"),
            ("result_class", "string"),
            ("operations", "bigint"),
            ("distinct_identities", "bigint"),
            ("distinct_ips", "bigint"),
            ("client_errors", "bigint"),
            ("server_errors", "bigint"),
            ("throttled", "bigint"),
            ("duration_p50_ms", "double"),
            ("duration_p95_ms", "double"),
            ("duration_max_ms", "bigint"),
        ],
    ),
    (
        "identity_daily",
        "daily",
        ["identity", "vault_name"],
        [
            ("date", "date"),
            ("identity", "string"),
            ("vault_name", "string"),
            ("object_id", "string"),
            ("app_id", "string"),
            ("upn", "string"),
            ("identity_type", "string"),
            ("operations", "bigint"),
            ("distinct_secrets", "bigint"),
            ("distinct_keys", "bigint"),
            ("distinct_certificates", "bigint"),
            ("distinct_ips", "bigint"),
            ("failed_operations", "bigint"),
            ("denied_operations", "bigint"),
            ("secret_reads", "bigint"),
            ("first_seen", "timestamp"),
            ("last_seen", "timestamp"),
            ("peak_list_read", "bigint"),
            ("peak_list_read_at", "timestamp"),
            ("peak_denied", "bigint"),
            ("peak_denied_at", "timestamp"),
        ],
    ),
    (
        "identity_ip_daily",
        "daily",
        ["identity", "ip"],
        [
            ("date", "date"),
            ("identity", "string"),
            ("ip", "string"),
            ("operations", "bigint"),
            ("first_seen", "timestamp"),
            ("last_seen", "timestamp"),
        ],
    ),
    ("sensitive_operations", "daily", ["subject", "vault_name", "description"], ANOMALY_COLUMNS),
    (
        "baselines",
        "history",
        ["scope", "metric", "vault_name", "identity", "ip"],
        [
            ("date", "date"),
            ("scope", "string"),
            ("metric", "string"),
            ("vault_name", "string"),
            ("identity", "string"),
            ("ip", "string"),
            ("value", "bigint"),
            ("days_7", "bigint"),
            ("mean_7", "double"),
            ("stddev_7", "double"),
            ("days_28", "bigint"),
            ("mean_28", "double"),
            ("stddev_28", "double"),
            ("first_seen", "date"),
            ("lake_age", "bigint"),
        ],
    ),
    (
        "anomalies",
        "history",
        ["kind", "subject", "vault_name", "identity", "ip", "window_start", "description"],
        ANOMALY_COLUMNS,
    ),
]

# Columns of the raw path (`raw/date=…/hour=…/`), never inside the files.
RAW_PARTITION_COLUMNS = ("date", "hour")

RAW_DAY = re.compile(r"^raw/date=(\d{4}-\d{2}-\d{2})/")


class SettingError(Exception):
    pass


# ---------------------------------------------------------------- settings and SQL text


def load_settings(defaults_text, overlay_text=None):
    """defaults.toml overlaid by a user file (flat, or kvlake's `[cold]` table)."""
    values = tomllib.loads(defaults_text)
    if overlay_text is not None:
        overlay = tomllib.loads(overlay_text)
        if isinstance(overlay.get("cold"), dict):
            overlay = overlay["cold"]
        for name, value in overlay.items():
            if name not in values:
                raise SettingError(f"unknown setting `{name}`")
            values[name] = value
    check(values)
    return values


def check(t):
    """The checks of coldpath/src/settings.rs `Thresholds::validate`."""
    if not 1 <= int(t["window_minutes"]) <= 10:
        raise SettingError("window_minutes must be 1 to 10 (the definitions join 10-minute buckets)")
    if not 1 <= int(t["warmup_days"]) <= 28:
        raise SettingError("warmup_days must be 1 to 28 (the baseline window)")
    for name in ("score_threshold", "volume_min_baseline", "volume_min_ratio"):
        v = float(t[name])
        if v != v or v in (float("inf"), float("-inf")) or v < 0:
            raise SettingError(f"{name} must be a finite number, 0 or more")
    for v in t["excluded_app_ids"]:
        if not v or not re.fullmatch(r"[0-9A-Fa-f-]+", v):
            raise SettingError(f"excluded_app_ids: `{v}` is not a valid entry")
    if not t["sensitive_operations"]:
        raise SettingError("sensitive_operations must name at least one operation")
    for v in t["sensitive_operations"]:
        if not re.fullmatch(r"[0-9A-Za-z]+", v):
            raise SettingError(f"sensitive_operations: `{v}` is not a valid entry")


def sql_number(v):
    """A decimal literal both engines read as a number, as settings.rs `sql_number`."""
    return f"{float(v):.6f}".rstrip("0") + "0"


def sql_values(t):
    """The `{{name}}` values, as settings.rs `Thresholds::sql_values`."""
    excluded = t["excluded_app_ids"]
    return {
        "mass_retrieval_threshold": str(int(t["mass_retrieval_threshold"])),
        "excluded_app_ids": ", ".join(f"'{s.lower()}'" for s in excluded) if excluded else "''",
        "sensitive_operations": ", ".join(f"'{s}'" for s in t["sensitive_operations"]),
        "list_read_min_secrets": str(int(t["list_read_min_secrets"])),
        "denied_burst_min": str(int(t["denied_burst_min"])),
        "window_minutes": str(int(t["window_minutes"])),
        "warmup_days": str(int(t["warmup_days"])),
        "score_threshold": sql_number(t["score_threshold"]),
        "volume_min_baseline": sql_number(t["volume_min_baseline"]),
        "volume_min_ratio": sql_number(t["volume_min_ratio"]),
        "new_subject_min_operations": str(int(t["new_subject_min_operations"])),
    }


def substitute(name, sql, values):
    """Replaces every `{{name}}`; a placeholder without a value is an error."""
    out, rest = [], sql
    while "{{" in rest:
        start = rest.index("{{")
        out.append(rest[:start])
        after = rest[start + 2 :]
        end = after.find("}}")
        if end < 0:
            raise SettingError(f"{name}: unclosed `{{{{` in the definition")
        key = after[:end].strip()
        if key not in values:
            raise SettingError(f"{name}: no value for `{{{{{key}}}}}`")
        out.append(values[key])
        rest = after[end + 2 :]
    out.append(rest)
    return "".join(out)


# ---------------------------------------------------------------- lake


def join(root, rel):
    return root.rstrip("/") + "/" + rel.lstrip("/")


def read_text(spark, path):
    """A small text file, local or anywhere Spark reads (abfss://, dbfs:/, …)."""
    if "://" not in path or path.startswith("file://"):
        local = path[len("file://") :] if path.startswith("file://") else path
        if os.path.isfile(local):
            with open(local, encoding="utf-8") as f:
                return f.read()
    rows = spark.read.text(path, wholetext=True).collect()
    if not rows:
        raise FileNotFoundError(path)
    return rows[0][0]


def committed_raw_files(spark, lake):
    """Paths (relative to the lake root) of the raw table's live files, replayed from its
    Delta log (`raw/_delta_log`: the newest checkpoint, then every JSON commit after it,
    in version order): the files of every published batch and compaction, never one of
    a batch not yet published nor one a compaction replaced (delta-spark is not needed)."""
    log = join(lake, "raw/_delta_log")
    live, after = set(), -1
    try:
        last = json.loads(read_text(spark, join(log, "_last_checkpoint")))
    except Exception:  # no checkpoint yet (or no table): the commits say everything
        last = None
    if last is not None:
        after = int(last["version"])
        checkpoint = spark.read.parquet(join(log, f"{after:020d}.checkpoint.parquet"))
        if "add" in checkpoint.columns:
            live = {r.path for r in checkpoint.where(F.col("add").isNotNull()).select("add.path").collect()}
    try:
        lines = spark.read.text(join(log, "*.json")).withColumn("file", F.input_file_name()).collect()
    except Exception as e:  # no table at all: nothing is committed
        if "PATH_NOT_FOUND" in str(e) or "Path does not exist" in str(e):
            return []
        raise
    actions = []
    for row in lines:
        version = int(re.search(r"(\d{20})\.json$", row.file).group(1))
        if version > after and row.value.strip():
            actions.append((version, json.loads(row.value)))
    for _, action in sorted(actions, key=lambda a: a[0]):
        if "add" in action:
            live.add(action["add"]["path"])
        elif "remove" in action:
            live.discard(action["remove"]["path"])
    return sorted("raw/" + urllib.parse.unquote(p) for p in live)


def delete_days(spark, table_dir, days):
    """Removes `date=` folders of days this run computed without a row, so a day that
    became empty does not keep old rows (dynamic overwrite only replaces days it writes)."""
    if not days:
        return
    try:
        jvm = spark.sparkContext._jvm
        conf = spark.sparkContext._jsc.hadoopConfiguration()
    except Exception:  # Spark Connect (Databricks shared clusters): no JVM access
        print(f"kvlake-cold: cannot clear emptied days of {table_dir}: {sorted(days)}", file=sys.stderr)
        return
    for day in days:
        path = jvm.org.apache.hadoop.fs.Path(join(table_dir, f"date={day}"))
        fs = path.getFileSystem(conf)
        if fs.exists(path):
            fs.delete(path, True)


def history(spark, table_dir, columns):
    """Every day of a table in the output, `date` from the folder names."""
    schema = ", ".join(f"`{c}` {t}" for c, t in columns)
    return spark.read.schema(schema).parquet(table_dir)


# ---------------------------------------------------------------- run


def run(spark, lake, output, sql_dir, settings_text=None):
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")

    thresholds = load_settings(read_text(spark, join(sql_dir, "defaults.toml")), settings_text)
    values = sql_values(thresholds)

    files = committed_raw_files(spark, lake)
    days = sorted({m.group(1) for m in (RAW_DAY.match(f) for f in files) if m})
    if not days:
        print("kvlake-cold: no committed raw data; nothing to do", file=sys.stderr)
        return {}
    first, last = days[0], days[-1]
    d0, d1 = datetime.date.fromisoformat(first), datetime.date.fromisoformat(last)
    analysed = [str(d0 + datetime.timedelta(n)) for n in range((d1 - d0).days + 1)]
    values["from"], values["to"] = first, last
    print(f"kvlake-cold: {len(files)} committed raw files, days {first} to {last}", file=sys.stderr)

    raw = spark.read.parquet(*[join(lake, f) for f in files])
    raw = raw.drop(*[c for c in RAW_PARTITION_COLUMNS if c in raw.columns])
    raw.createOrReplaceTempView("raw")
    events = substitute("events", read_text(spark, join(sql_dir, "events.sql")), values)
    spark.sql(events).createOrReplaceTempView("events")

    counts = {}
    for name, stage, sort, columns in TABLES:
        sql = substitute(name, read_text(spark, join(sql_dir, f"{name}.sql")), values)
        result = spark.sql(sql).select(*[F.col(c).cast(t).alias(c) for c, t in columns])
        # Kept for the write and the row counts, so the definition runs once.
        result = result.persist(StorageLevel.MEMORY_AND_DISK)
        table_dir = join(output, f"agg/{name}")
        (
            result.repartition("date")
            .sortWithinPartitions("date", *sort)
            .write.mode("overwrite")
            .partitionBy("date")
            .parquet(table_dir)
        )
        computed = {
            str(r["date"]): r["n"]
            for r in result.groupBy("date").agg(F.count(F.lit(1)).alias("n")).collect()
        }
        result.unpersist()
        covered = days if stage == "daily" else analysed
        delete_days(spark, table_dir, [d for d in covered if d not in computed])
        # Later definitions read what was written, as `kvlake cold` reads the lake: the
        # daily tables' whole history, this run's days replaced.
        history(spark, table_dir, columns).createOrReplaceTempView(name)
        counts[name] = sum(computed.values())
        print(f"kvlake-cold: {name}: {counts[name]} rows", file=sys.stderr)
    return counts


def default_sql_dir():
    for d in (os.path.join(HERE, "..", "..", "coldpath", "sql"), os.path.join(HERE, "sql")):
        if os.path.isfile(os.path.join(d, "defaults.toml")):
            return os.path.normpath(d)
    return os.path.join(HERE, "sql")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lake", required=True, help="lake root: a path or an abfss:// URL")
    p.add_argument("--output", help="where agg/<table>/ is written (default: the lake)")
    p.add_argument("--settings", help="TOML file overriding sql/defaults.toml (flat, or a [cold] table)")
    p.add_argument("--sql", default=default_sql_dir(), help="folder of the definitions (coldpath/sql)")
    p.add_argument("--master", help="Spark master when not set by spark-submit, e.g. local[2]")
    p.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Spark setting for a session this script starts (python3 kvlake_cold.py ...), repeatable",
    )
    args = p.parse_args(argv)

    builder = SparkSession.builder.appName("kvlake-cold").config("spark.sql.session.timeZone", "UTC")
    if args.master:
        builder = builder.master(args.master)
    for kv in args.conf:
        key, sep, value = kv.partition("=")
        if not sep:
            p.error(f"--conf {kv}: expected KEY=VALUE")
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    try:
        settings_text = read_text(spark, args.settings) if args.settings else None
        run(spark, args.lake, args.output or args.lake, args.sql, settings_text)
    except SettingError as e:
        print(f"kvlake-cold: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
