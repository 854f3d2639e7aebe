#!/usr/bin/env python3
"""Compares the cold-path tables of two outputs row for row (e.g. `kvlake cold` against
deploy/spark/kvlake_cold.py over the same lake).

    python3 compare.py LEFT_ROOT RIGHT_ROOT [--rel-tol 1e-9]
    python3 compare.py --self-test ROOT

Each root holds `agg/<table>/date=YYYY-MM-DD/*.parquet`. Per table: same columns and
types, same row count, and the same rows after sorting by all columns, floats within a
relative tolerance, timestamps as UTC microseconds, NULL equal to NULL. Prints every
difference (at most a few per table), then one JSON line of row counts and anomaly kinds;
exits 1 if anything differs. `--self-test` perturbs ROOT's tables in memory and checks
that each perturbation is reported, so a pass above cannot be a comparison that never
fails.
"""

import argparse
import json
import math
import os
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

TABLES = [
    "vault_daily",
    "identity_daily",
    "identity_ip_daily",
    "sensitive_operations",
    "baselines",
    "anomalies",
]
SHOWN = 5

# Known, bounded engine differences: (table, column) -> (reference column, factor). The
# values may differ by at most factor x |reference| (absolute). DataFusion's
# percentile_cont (datafusion-functions-aggregate, INTERPOLATION_PRECISION) truncates the
# interpolation weight to 6 decimals, so its result is lower than the exact one (Spark's)
# by up to 1e-6 x (upper - lower) <= 1e-6 x the group's largest duration. `--strict`
# turns these off.
BOUNDED = {
    ("vault_daily", "duration_p50_ms"): ("duration_max_ms", 1e-6),
    ("vault_daily", "duration_p95_ms"): ("duration_max_ms", 1e-6),
}


def load(root, table):
    """The table with `date` from the folder names, timestamps as UTC microseconds."""
    path = os.path.join(root, "agg", table)
    part = ds.partitioning(pa.schema([("date", pa.date32())]), flavor="hive")
    t = ds.dataset(path, format="parquet", partitioning=part).to_table()
    columns, fields = [], []
    for field, col in zip(t.schema, t.columns):
        typ = field.type
        if pa.types.is_timestamp(typ):
            if typ.tz is None:
                raise ValueError(f"{table}.{field.name}: timestamp without a time zone ({typ})")
            col = pc.cast(col, pa.timestamp("us", tz="UTC"))
            typ = col.type
        elif pa.types.is_large_string(typ) or pa.types.is_string_view(typ):
            col = pc.cast(col, pa.string())
            typ = pa.string()
        elif pa.types.is_dictionary(typ):
            col = pc.cast(col, typ.value_type)
            typ = typ.value_type
        columns.append(col)
        fields.append(pa.field(field.name, typ))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def rows_of(t):
    """Rows as tuples; timestamps become int microseconds, dates ISO strings."""
    cols = []
    for field, col in zip(t.schema, t.columns):
        if pa.types.is_timestamp(field.type):
            col = pc.cast(col, pa.int64())
        elif pa.types.is_date(field.type):
            col = pc.cast(col, pa.string())
        cols.append(col.to_pylist())
    return list(zip(*cols))


def sort_key(row):
    # Exact columns first, then floats rounded, so that two engines' last bits do not
    # reorder rows; NULLs first.
    exact, rounded = [], []
    for v in row:
        if v is None:
            exact.append((0, 0))
        elif isinstance(v, float):
            rounded.append((1, float(f"{v:.5g}") if math.isfinite(v) else str(v)))
        else:
            exact.append((1, v))
    return exact + rounded


def same(a, b, rel_tol):
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-12)
    return a == b


def compare(name, left, right, rel_tol, bounded=None, notes=None):
    """Differences between two tables, as sentences (empty when they agree). Values that
    differ within a `bounded` allowance are counted in `notes` instead."""
    bounded = BOUNDED if bounded is None else bounded
    notes = {} if notes is None else notes
    if left.schema.names != right.schema.names:
        return [f"{name}: columns differ: {left.schema.names} against {right.schema.names}"]
    diffs = []
    for a, b in zip(left.schema, right.schema):
        if a.type != b.type:
            diffs.append(f"{name}.{a.name}: type {a.type} against {b.type}")
    if diffs:
        return diffs
    if left.num_rows != right.num_rows:
        diffs.append(f"{name}: {left.num_rows} rows against {right.num_rows}")
    lrows = sorted(rows_of(left), key=sort_key)
    rrows = sorted(rows_of(right), key=sort_key)
    names = left.schema.names
    shown = 0
    allowances = [
        (names.index(col), names.index(ref), factor)
        for (table, col), (ref, factor) in bounded.items()
        if table == name and col in names and ref in names
    ]
    for i, (a, b) in enumerate(zip(lrows, rrows)):
        bad = [n for n, x, y in zip(names, a, b) if not same(x, y, rel_tol)]
        for col, ref, factor in allowances:
            x, y, r = a[col], b[col], a[ref]
            if names[col] in bad and None not in (x, y, r) and r == b[ref]:
                if abs(x - y) <= factor * abs(r) + 1e-12:
                    bad.remove(names[col])
                    key = f"{name}.{names[col]}"
                    notes[key] = notes.get(key, 0) + 1
        if bad:
            if shown < SHOWN:
                detail = ", ".join(f"{n}: {a[names.index(n)]!r} != {b[names.index(n)]!r}" for n in bad)
                diffs.append(f"{name}: sorted row {i} differs ({detail}); left row {dict(zip(names, a))}")
            shown += 1
    if shown > SHOWN:
        diffs.append(f"{name}: {shown - SHOWN} more rows differ")
    if len(lrows) != len(rrows):
        extra = lrows[len(rrows) :] or rrows[len(lrows) :]
        side = "left" if len(lrows) > len(rrows) else "right"
        for row in extra[:SHOWN]:
            diffs.append(f"{name}: only in {side} (after sorting): {dict(zip(names, row))}")
    return diffs


def summary(root):
    out = {"rows": {}, "anomaly_kinds": {}}
    for name in TABLES:
        t = load(root, name)
        out["rows"][name] = t.num_rows
        if name == "anomalies":
            for kind in t.column("kind").to_pylist():
                out["anomaly_kinds"][kind] = out["anomaly_kinds"].get(kind, 0) + 1
    return out


def perturbations(t):
    """Copies of `t`, each changed in one way a real disagreement could look like."""
    out = []
    n = t.num_rows
    if n == 0:
        return out
    out.append(("one row dropped", t.slice(1)))
    out.append(("one row doubled", pa.concat_tables([t, t.slice(0, 1)])))
    for field in t.schema:
        col = t.column(field.name).combine_chunks()
        values = col.to_pylist()
        i = next((k for k, v in enumerate(values) if v is not None), None)
        if i is None:
            continue
        changed = list(values)
        if pa.types.is_floating(field.type):
            changed[i] = values[i] * 1.01 + 0.01
        elif pa.types.is_integer(field.type):
            changed[i] = values[i] + 1
        elif pa.types.is_string(field.type):
            changed[i] = values[i] + "x"
        elif pa.types.is_timestamp(field.type):
            changed[i] = None
        else:
            continue
        new = pa.array(changed, type=field.type)
        out.append((f"{field.name} changed", t.set_column(t.schema.get_field_index(field.name), field.name, new)))
    return out


def self_test(root, rel_tol):
    failures, checked = [], 0
    for name in TABLES:
        # A few hundred rows show whether each kind of change is caught.
        t = load(root, name).slice(0, 300)
        if compare(name, t, t, rel_tol):
            failures.append(f"{name}: differs from itself")
        for what, p in perturbations(t):
            checked += 1
            if not compare(name, t, p, rel_tol):
                failures.append(f"{name}: not reported different with {what}")
    for f in failures:
        print(f)
    print(f"self-test: {checked} perturbations, {len(failures)} missed")
    return 1 if failures or checked == 0 else 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("roots", nargs="+", help="LEFT_ROOT RIGHT_ROOT, or ROOT with --self-test")
    p.add_argument("--rel-tol", type=float, default=1e-9)
    p.add_argument("--self-test", action="store_true")
    p.add_argument("--strict", action="store_true", help="no allowance for known engine differences")
    args = p.parse_args(argv)
    if args.self_test:
        return self_test(args.roots[0], args.rel_tol)
    if len(args.roots) != 2:
        p.error("two roots to compare")
    left, right = args.roots
    diffs, notes = [], {}
    bounded = {} if args.strict else BOUNDED
    for name in TABLES:
        d = compare(name, load(left, name), load(right, name), args.rel_tol, bounded, notes)
        print(f"{name}: {'differs' if d else 'equal'}")
        diffs.extend(d)
    for d in diffs:
        print(d)
    for key, n in sorted(notes.items()):
        print(f"{key}: {n} values differ beyond --rel-tol, within the known bound (see BOUNDED)")
    report = {"left": summary(left), "right": summary(right), "bounded": notes, "equal": not diffs}
    print(json.dumps(report))
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
