#!/usr/bin/env python3
"""Runs the real kvlake binary with the arguments and settings of every workload
in deploy/, against librdkafka's mock cluster (`kvlake mock-broker`, loopback only)
and a local lake, and checks each run ends the way its run mode should: exit 0.

What it proves: the flags, the TOML of the ConfigMap and the KVLAKE_* variables
that the manifests give kvlake are accepted by this build, and each run mode
(service, scheduled, scale-out, backfill) starts, reads the topic and stops
cleanly. What it does not: Azure (identity, Event Hubs, ADLS) is replaced by the
mock broker and a folder, so --brokers and --lake are overridden; a metrics address
(--metrics-addr, KVLAKE_METRICS_ADDR, metrics_addr) is moved to a free loopback
port and the run must log that it serves /metrics, /healthz and /readyz; flags still
to come (--otlp-endpoint, --auth) are dropped when this build lacks them; a service
(no --until-caught-up) gets --max-runtime 3s so it stops by itself.

A `kvlake cold` workload runs against its own copy of a small lake made with
`kvlake generate | kvlake convert` (so it has committed data to aggregate), with the
thresholds file of its ConfigMap, and must exit 0 having computed the tables. The
same workload found in several builds (the cold CronJob is in every run mode's
build) runs once.

Usage: smoke_modes.py KVLAKE_BIN MANIFEST.yaml...
(Kubernetes manifests as built by kustomize, Container Apps YAML.)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

PENDING = ("--otlp-endpoint", "--auth")
SERVING = "serving /metrics, /healthz and /readyz"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mounted(c: dict, volumes: dict, configmaps: dict, path: str) -> str | None:
    """The content of a file a container sees at `path`, from a mounted ConfigMap."""
    for m in c.get("volumeMounts", []):
        prefix = m["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            cm = volumes.get(m["name"], {}).get("configMap", {}).get("name")
            return configmaps.get(cm, {}).get(path[len(prefix):])
    return None


def workloads(path: Path):
    """(name, args, env, toml, files) for each kvlake container in a file; files maps
    the paths of other mounted ConfigMap files the arguments name to their content."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    tomls, configmaps = {}, {}
    for d in docs:
        if d.get("kind") == "ConfigMap":
            configmaps[d["metadata"]["name"]] = d.get("data") or {}
            for k, v in (d.get("data") or {}).items():
                if k.endswith(".toml"):
                    tomls[d["metadata"]["name"]] = v
    for d in docs:
        kind = d.get("kind")
        if kind in ("Deployment", "Job"):
            pod = d["spec"]["template"]["spec"]
        elif kind == "CronJob":
            pod = d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif d.get("type") in ("Microsoft.App/containerApps", "Microsoft.App/jobs"):
            pod = d["properties"]["template"]
            kind = d["type"].split("/")[1]
        else:
            continue
        name = f"{path.name}:{kind}/{d.get('metadata', {}).get('name') or d.get('name')}"
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for c in pod["containers"]:
            env = {e["name"]: str(e["value"]) for e in c.get("env", []) if "value" in e}
            toml = None
            if "KVLAKE_CONFIG" in env:
                # Find the ConfigMap mounted where KVLAKE_CONFIG points.
                for m in c.get("volumeMounts", []):
                    if env["KVLAKE_CONFIG"].startswith(m["mountPath"].rstrip("/") + "/"):
                        cm = volumes.get(m["name"], {}).get("configMap", {}).get("name")
                        toml = tomls.get(cm)
                if toml is None:
                    raise SystemExit(f"{name}: KVLAKE_CONFIG points at no ConfigMap in the same build")
            files = {}
            paths = [a.split("=", 1)[1] for a in c.get("args", []) if a.startswith("--thresholds=")]
            paths += [env["KVLAKE_COLD_THRESHOLDS"]] if "KVLAKE_COLD_THRESHOLDS" in env else []
            for p in paths:
                files[p] = mounted(c, volumes, configmaps, p)
                if files[p] is None:
                    raise SystemExit(f"{name}: {p} is in no ConfigMap mounted from the same build")
            yield name, list(c.get("args", [])), env, toml, files


def make_cold_lake(binary: str, lake: Path, tmp: Path) -> None:
    """A small lake with committed raw data, for the cold-path runs."""
    records = tmp / "generated.jsonl"
    with records.open("w") as out:
        subprocess.run([binary, "generate", "--records", "3000", "--seed", "7", "--format", "lines"],
                       stdout=out, check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KVLAKE_", "AZURE_"))}
    subprocess.run([binary, "convert", str(records), "--lake", str(lake)], env=env, check=True,
                   capture_output=True, timeout=120)


def run_cold(binary: str, name: str, args: list[str], env: dict, toml: str | None, files: dict,
             source: Path, lake: Path, scratch: Path) -> int:
    """Runs one `kvlake cold` workload on a copy of the source lake; 1 if it failed."""
    shutil.copytree(source, lake)
    scratch.mkdir()
    argv = [binary]
    for a in args:
        flag, _, value = a.partition("=")
        if flag == "--thresholds":
            a = f"--thresholds={scratch / 'thresholds.toml'}"
        argv.append(a)
    argv += ["--lake", str(lake)]
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("KVLAKE_", "AZURE_", "OTEL_"))}
    run_env.update({k: v for k, v in env.items() if k.startswith("KVLAKE_")})
    run_env["KVLAKE_LOG_FORMAT"] = "json"
    for path, content in files.items():
        (scratch / "thresholds.toml").write_text(content)
        if env.get("KVLAKE_COLD_THRESHOLDS") == path:
            run_env["KVLAKE_COLD_THRESHOLDS"] = str(scratch / "thresholds.toml")
    if toml is not None:
        (scratch / "kvlake.toml").write_text(toml)
        run_env["KVLAKE_CONFIG"] = str(scratch / "kvlake.toml")
    try:
        p = subprocess.run(argv, env=run_env, capture_output=True, text=True, timeout=180)
        ok = p.returncode == 0 and "recomputed" in p.stdout and (lake / "agg" / "anomalies").is_dir()
        detail = (p.stderr.strip().splitlines() or p.stdout.strip().splitlines() or [""])[-1][:300]
    except subprocess.TimeoutExpired:
        ok, detail = False, "did not stop within 180 s"
    if ok:
        print(f"ok   {name}: {p.stdout.strip().splitlines()[0]}")
        return 0
    print(f"FAIL {name}: exit {getattr(p, 'returncode', '?')}: {detail}")
    return 1


def main() -> int:
    binary = sys.argv[1]
    help_text = subprocess.run([binary, "hot", "--help"], capture_output=True, text=True, check=True).stdout
    if "--metrics-addr" not in help_text:
        print(f"note {binary} predates --metrics-addr: workloads that use it will fail; rebuild kvlake")
    failures = runs = 0
    done: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="kvlake-smoke-") as tmp:
        tmp_path = Path(tmp)
        cold_lake = tmp_path / "cold-source"
        cold_ready = False
        broker = subprocess.Popen(
            [binary, "mock-broker", "--topic", "kv-audit", "--partitions", "8"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        try:
            line = broker.stdout.readline().strip()
            if not line.startswith("BOOTSTRAP="):
                raise SystemExit(f"mock broker did not start: {line!r}")
            bootstrap = line.split("=", 1)[1]
            for manifest in sys.argv[2:]:
                for name, args, env, toml, files in workloads(Path(manifest)):
                    key = repr((name.split(":", 1)[1], args, sorted(env.items()), toml, files))
                    if key in done:
                        continue
                    done.add(key)
                    runs += 1
                    if args[:1] == ["cold"]:
                        if not cold_ready:
                            make_cold_lake(binary, cold_lake, tmp_path)
                            cold_ready = True
                        failures += run_cold(binary, name, args, env, toml, files, cold_lake, tmp_path / f"lake{runs}",
                                             tmp_path / f"run{runs}")
                        continue
                    dropped = [a for a in args if a.split("=")[0] in PENDING and a.split("=")[0] not in help_text]
                    argv = [binary] + [a for a in args if a not in dropped]
                    # Metrics on a free loopback port (the flag outranks env and TOML).
                    metrics = (any(a.split("=")[0] == "--metrics-addr" for a in args)
                               or "KVLAKE_METRICS_ADDR" in env
                               or (toml is not None and tomllib.loads(toml).get("metrics_addr")))
                    if metrics:
                        argv = [a for a in argv if a.split("=")[0] != "--metrics-addr"]
                        argv.append(f"--metrics-addr=127.0.0.1:{free_port()}")
                    # The topic must be the mock's: override only what points at Azure.
                    argv += ["--brokers", bootstrap, "--topic", "kv-audit", "--lake", str(tmp_path / f"lake{runs}")]
                    if "--until-caught-up" not in args and not any(a.startswith("--ending-timestamp") for a in args):
                        argv += ["--max-runtime", "3s"]
                    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("KVLAKE_", "AZURE_"))}
                    run_env.update({k: v for k, v in env.items() if k.startswith("KVLAKE_")})
                    run_env["KVLAKE_LOG_FORMAT"] = "json"
                    if toml is not None:
                        cfg = tmp_path / f"kvlake{runs}.toml"
                        cfg.write_text(toml)
                        run_env["KVLAKE_CONFIG"] = str(cfg)
                    try:
                        p = subprocess.run(argv, env=run_env, capture_output=True, text=True, timeout=90)
                        ok = p.returncode == 0 and "committed" in p.stdout
                        detail = (p.stderr.strip().splitlines() or [""])[-1][:300]
                        if ok and metrics and SERVING not in p.stderr:
                            ok, detail = False, f"--metrics-addr given but no {SERVING!r} in the log"
                    except subprocess.TimeoutExpired:
                        ok, detail = False, "did not stop within 90 s"
                    note = f" (dropped pending {', '.join(dropped)})" if dropped else ""
                    if ok:
                        print(f"ok   {name}{note}")
                    else:
                        failures += 1
                        print(f"FAIL {name}{note}: exit {getattr(p, 'returncode', '?')}: {detail}")
        finally:
            broker.stdin.close()
            try:
                broker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                broker.kill()
    print(f"smoke: {runs} workloads run against the mock broker, {failures} failed")
    return 1 if failures or not runs else 0


if __name__ == "__main__":
    sys.exit(main())
