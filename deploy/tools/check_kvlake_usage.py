#!/usr/bin/env python3
"""Checks that the deploy kit asks kvlake only for what kvlake has.

Reads the command line and the settings from the Rust sources (ingest/src/cli.rs,
ingest/src/settings.rs) and checks every manifest of deploy/ against them:

* every `kvlake` argument in Kubernetes and Container Apps definitions is a flag of
  `kvlake hot` or `kvlake cold` (whichever the workload runs; or a global flag), or
  one of the flags still to come (`--auth`), reported as PENDING, not as an error;
* a cold-path rebuild has --rebuild, --from and --to together, as YYYY-MM-DD days in
  order; the thresholds file in its ConfigMap and KVLAKE_COLD_<KEY> variables use
  only keys of coldpath/sql/defaults.toml, with the defaults' types (kvlake refuses
  unknown keys);
* an OTLP endpoint (--otlp-endpoint, OTEL_EXPORTER_OTLP_ENDPOINT) is an http:// URL,
  as kvlake demands (it sends OTLP/HTTP to a collector on the private network);
* the metrics address (--metrics-addr, KVLAKE_METRICS_ADDR or metrics_addr) is
  IP:PORT as kvlake demands, and the probes on /healthz or /readyz, the container
  port and the prometheus.io/port annotation use its port;
* the TOML in the ConfigMap parses, and its keys are settings kvlake accepts (the
  settings struct refuses unknown keys at start-up);
* every KVLAKE_* environment variable is one kvlake reads;
* a replay (--starting-offsets/--starting-timestamp/--ending-timestamp) carries
  --output-prefix, as kvlake demands;
* durations and sizes have a form kvlake parses;
* terminationGracePeriodSeconds exceeds kvlake's --grace;
* the KEDA maxReplicaCount does not exceed the hub's partition count in Bicep;
* the Dockerfile builds with the README's build command.

Standard library only (Python >= 3.11 for tomllib) plus PyYAML.
Usage: check_kvlake_usage.py <repo root>
"""

from __future__ import annotations

import ipaddress
import re
import sys
import tomllib
from pathlib import Path

import yaml

# Flags still to come; manifests may carry them ahead of the code (commented out,
# or reported as PENDING). --metrics-addr is in kvlake and checked like any flag.
PENDING_FLAGS = {"--auth": "later: --auth entra"}
PENDING_ENV: dict[str, str] = {}
HEALTH_PATHS = {"/healthz", "/readyz", "/metrics"}
# Variables kvlake reads besides the layered settings.
EXTRA_ENV = {"KVLAKE_CONFIG", "KVLAKE_LOG_FORMAT", "KVLAKE_LOG"}

# The ConfigMap holding the cold path's thresholds file (deploy/kubernetes/cold).
THRESHOLDS_CONFIGMAP = "kvlake-cold-thresholds"
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")

DURATION = re.compile(r"^(\d+(ns|us|ms|s|sec|m|min|h|hr|d|days?|w))+$")
SIZE = re.compile(r"^\d+\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?$", re.IGNORECASE)
DURATION_KEYS = {"grace", "max_runtime", "batch_max_wait", "connect_timeout", "storage_retry_timeout"}
SIZE_KEYS = {"file_target_size", "memory_budget", "max_message_size"}

errors: list[str] = []
pending: list[str] = []
checked = 0


def fail(where: str, msg: str) -> None:
    errors.append(f"{where}: {msg}")


def kebab(name: str) -> str:
    return "--" + name.replace("_", "-")


def struct_fields(src: str, struct: str) -> list[tuple[str, str]]:
    """(field, attributes-before-it) of a Rust struct, attributes as one string."""
    m = re.search(r"pub struct " + struct + r"\s*\{(.*?)\n\}", src, re.S)
    if not m:
        raise SystemExit(f"cannot find struct {struct}")
    out, attrs = [], []
    for line in m.group(1).splitlines():
        line = line.strip()
        if line.startswith("#["):
            attrs.append(line)
        elif line.startswith("pub "):
            field = line[4:].split(":")[0].strip()
            out.append((field, " ".join(attrs)))
            attrs = []
        elif not line.startswith("///") and line:
            attrs.append(line)
    return out


def flags_of(src: str, struct: str) -> set[str]:
    flags = set()
    for field, attrs in struct_fields(src, struct):
        if "#[arg(" not in attrs and "#[command(" not in attrs:
            continue
        if "#[command(" in attrs:
            continue
        long = re.search(r'long\s*=\s*"([^"]+)"', attrs)
        if long:
            flags.add("--" + long.group(1))
        elif re.search(r"\blong\b", attrs):
            flags.add(kebab(field))
    return flags


def load_code(root: Path):
    cli = (root / "ingest/src/cli.rs").read_text()
    settings = (root / "ingest/src/settings.rs").read_text()
    flags = {"hot": flags_of(cli, "HotArgs") | flags_of(cli, "Cli"),
             "cold": flags_of(cli, "ColdArgs") | flags_of(cli, "Cli")}
    setting_keys = {f for f, _ in struct_fields(settings, "HotSettings")}
    env_keys_src = re.search(r"const ENV_KEYS: &\[&str\] = &\[(.*?)\];", settings, re.S)
    env_keys = {"KVLAKE_" + k.upper() for k in re.findall(r'"([a-z_]+)"', env_keys_src.group(1))}
    thresholds = tomllib.loads((root / "coldpath/sql/defaults.toml").read_text())
    return flags, setting_keys, env_keys | EXTRA_ENV, thresholds


def check_threshold(where: str, key: str, value, defaults: dict) -> None:
    """A cold-path threshold: a key of defaults.toml, with the default's type."""
    if key not in defaults:
        fail(where, f"unknown cold-path threshold {key!r}: not a key of coldpath/sql/defaults.toml, kvlake refuses it")
        return
    want = defaults[key]
    if isinstance(value, str) and not isinstance(want, str):
        try:  # from an environment variable: parse it as a TOML value
            value = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            fail(where, f"{key} = {value!r} is not a {type(want).__name__} like its default {want!r}")
            return
    ok = (isinstance(value, float | int) and not isinstance(value, bool)) if isinstance(want, float) \
        else type(value) is type(want)
    if ok and isinstance(want, list):
        ok = all(isinstance(v, str) for v in value)
    if not ok:
        fail(where, f"{key} = {value!r} is not a {type(want).__name__} like its default {want!r}")


def check_value(where: str, key: str, value: str) -> None:
    if key in DURATION_KEYS and not DURATION.match(str(value).strip()):
        fail(where, f"{key} = {value!r} is not a duration kvlake parses (e.g. 90s, 5m, 3h30m)")
    if key in SIZE_KEYS and not SIZE.match(str(value).strip()):
        fail(where, f"{key} = {value!r} is not a size kvlake parses (e.g. 512MiB)")


def check_args(where: str, args: list[str], flags: dict[str, set[str]]) -> dict[str, str]:
    """Checks a `kvlake` argument list; returns {flag: value}."""
    global checked
    checked += 1
    if not args or args[0] not in flags:
        fail(where, f"expected `hot` or `cold` as the subcommand, got {args[:1]}")
        return {}
    command = args[0]
    seen: dict[str, str] = {}
    i = 1
    while i < len(args):
        a = args[i]
        if not a.startswith("--"):
            fail(where, f"unexpected positional argument {a!r}")
            i += 1
            continue
        flag, _, value = a.partition("=")
        if flag in PENDING_FLAGS:
            pending.append(f"{where}: {flag} ({PENDING_FLAGS[flag]})")
        elif flag not in flags[command]:
            fail(where, f"{flag} is not a flag of `kvlake {command}` (see ingest/src/cli.rs)")
        seen[flag] = value
        check_value(where, flag[2:].replace("-", "_"), value) if value else None
        if flag == "--otlp-endpoint":
            check_otlp(where, value)
        i += 1
    if command == "cold":
        check_cold_args(where, seen)
    replay = {"--starting-offsets", "--starting-timestamp", "--ending-timestamp"} & seen.keys()
    if replay and "--output-prefix" not in seen:
        fail(where, f"{sorted(replay)} without --output-prefix: kvlake refuses a replay that would move the live checkpoint")
    return seen


def check_cold_args(where: str, seen: dict[str, str]) -> None:
    rebuild = {"--rebuild", "--from", "--to"} & seen.keys()
    if rebuild and rebuild != {"--rebuild", "--from", "--to"}:
        fail(where, f"{sorted(rebuild)}: kvlake cold needs --rebuild, --from and --to together")
    days = [seen.get(f, "") for f in ("--from", "--to") if f in seen]
    for d in days:
        if not DAY.match(d):
            fail(where, f"--from/--to {d!r} is not a day, write YYYY-MM-DD")
    if len(days) == 2 and all(DAY.match(d) for d in days) and days[0] > days[1]:
        fail(where, f"--from {days[0]} is after --to {days[1]}")
    if "--threads" in seen and not (seen["--threads"].isdigit() and int(seen["--threads"]) > 0):
        fail(where, f"--threads {seen['--threads']!r} is not a positive number")


def check_otlp(where: str, value: str) -> None:
    if not value.startswith("http://"):
        fail(where, f"OTLP endpoint {value!r}: kvlake sends OTLP/HTTP, give http://<collector>:4318")
    elif value.rstrip("/").endswith(":4317"):
        fail(where, f"OTLP endpoint {value!r}: 4317 is the collector's gRPC port; kvlake speaks OTLP/HTTP (4318)")


def check_env(where: str, env: list[dict], env_keys: set[str], thresholds: dict | None = None) -> dict[str, str]:
    """KVLAKE_* variables; `thresholds` (the defaults) when the workload is `kvlake cold`."""
    values = {}
    for e in env or []:
        name = e.get("name", "")
        if thresholds is not None and name.startswith("KVLAKE_COLD_"):
            if name != "KVLAKE_COLD_THRESHOLDS" and "value" in e:
                check_threshold(where, name.removeprefix("KVLAKE_COLD_").lower(), str(e["value"]), thresholds)
            values[name] = str(e.get("value", ""))
            continue
        if name.startswith("KVLAKE_") and name not in env_keys:
            fail(where, f"{name} is not a variable kvlake reads (ENV_KEYS in ingest/src/settings.rs)")
        if name in PENDING_ENV:
            pending.append(f"{where}: {name} ({PENDING_ENV[name]})")
        if "value" in e:
            values[name] = str(e["value"])
            if name == "OTEL_EXPORTER_OTLP_ENDPOINT":
                check_otlp(where, str(e["value"]))
            key = name.removeprefix("KVLAKE_").lower()
            if name.startswith("KVLAKE_"):
                check_value(where, key, e["value"])
    return values


def metrics_port(where: str, addr: str | None) -> int | None:
    """The port of a metrics address, or None; kvlake wants IP:PORT (no host name)."""
    if not addr:
        return None
    host, sep, port = addr.strip().rpartition(":")
    try:
        ipaddress.ip_address(host.strip("[]"))
        if not sep or not 0 <= int(port) <= 65535:
            raise ValueError
    except ValueError:
        fail(where, f"metrics address {addr!r} is not IP:PORT (kvlake refuses host names), e.g. 0.0.0.0:9464")
        return None
    return int(port)


def check_endpoints(where: str, port: int | None, probes: list[dict], ports: dict[str, int],
                    annotations: dict) -> None:
    """Probes/annotations on kvlake's endpoints must use the metrics port, and need it set."""
    for probe in probes:
        get = probe.get("httpGet") or {}
        if get.get("path") not in HEALTH_PATHS:
            continue
        p = get.get("port")
        p = ports.get(p, p) if isinstance(p, str) else p
        if port is None:
            fail(where, f"probe on {get['path']} but no --metrics-addr/KVLAKE_METRICS_ADDR/metrics_addr: nothing listens")
        elif p != port:
            fail(where, f"probe on {get['path']} uses port {p}, kvlake listens on {port}")
    for name, p in ports.items():
        if name == "metrics" and port is not None and p != port:
            fail(where, f"containerPort 'metrics' {p} is not the --metrics-addr port {port}")
    if (annotations or {}).get("prometheus.io/scrape") == "true":
        a = int((annotations or {}).get("prometheus.io/port", 0))
        if port is None:
            fail(where, "prometheus.io/scrape is set but kvlake serves no /metrics (no --metrics-addr)")
        elif a != port:
            fail(where, f"prometheus.io/port {a} is not the --metrics-addr port {port}")


def seconds(d: str) -> float:
    total = 0.0
    for n, unit in re.findall(r"(\d+)([a-z]+)", d):
        total += int(n) * {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}.get(unit, 0)
    return total


def pod_specs(doc: dict):
    """(pod spec, pod annotations) of a workload."""
    kind = doc.get("kind")
    spec = doc.get("spec", {})
    if kind in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        template = spec.get("template", {})
    elif kind == "CronJob":
        template = spec.get("jobTemplate", {}).get("spec", {}).get("template", {})
    else:
        return
    yield template.get("spec", {}), template.get("metadata", {}).get("annotations", {})


def main(root: Path) -> int:
    flags, setting_keys, env_keys, thresholds = load_code(root)
    deploy = root / "deploy"

    # The settings file in the ConfigMap.
    toml_grace = toml_metrics = None
    for path in sorted(deploy.glob("kubernetes/**/*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") != "ConfigMap":
                continue
            for name, text in (doc.get("data") or {}).items():
                if not name.endswith(".toml"):
                    continue
                where = f"{path.relative_to(root)}:{name}"
                try:
                    settings = tomllib.loads(text)
                except tomllib.TOMLDecodeError as e:
                    fail(where, f"TOML does not parse: {e}")
                    continue
                global checked
                if doc["metadata"]["name"] == THRESHOLDS_CONFIGMAP:
                    for key, value in settings.items():
                        check_threshold(where, key, value, thresholds)
                    checked += 1
                    continue
                for key, value in settings.items():
                    if key not in setting_keys:
                        fail(where, f"unknown setting {key!r}: kvlake refuses it at start-up")
                    elif not isinstance(value, dict):
                        check_value(where, key, value)
                toml_grace = settings.get("grace", toml_grace)
                toml_metrics = settings.get("metrics_addr", toml_metrics)
                checked += 1

    # Kubernetes workloads.
    for path in sorted(deploy.glob("kubernetes/**/*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict):
                continue
            for pod, annotations in pod_specs(doc):
                for c in pod.get("containers", []):
                    where = f"{path.relative_to(root)}:{doc['kind']}/{doc['metadata']['name']}"
                    cold = c.get("args", [None])[:1] == ["cold"]
                    seen = check_args(where, c.get("args", []), flags)
                    env = check_env(where, c.get("env", []), env_keys, thresholds if cold else None)
                    # `kvlake cold` serves no endpoints (its metrics go out over OTLP).
                    addr = None if cold else seen.get("--metrics-addr") or env.get("KVLAKE_METRICS_ADDR") or toml_metrics
                    probes = [c[k] for k in ("startupProbe", "livenessProbe", "readinessProbe") if k in c]
                    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
                    check_endpoints(where, metrics_port(where, addr), probes, ports, annotations)
                    if cold:
                        continue
                    grace = seen.get("--grace") or toml_grace or "60s"
                    tgps = pod.get("terminationGracePeriodSeconds", 30)
                    if tgps <= seconds(grace):
                        fail(where, f"terminationGracePeriodSeconds {tgps} must exceed kvlake's grace {grace}")
            if doc.get("kind") == "ScaledObject":
                max_replicas = doc["spec"].get("maxReplicaCount", 100)
                bicep = (deploy / "bicep/main.bicep").read_text()
                m = re.search(r"param partitionCount int = (\d+)", bicep)
                if m and max_replicas > int(m.group(1)):
                    fail(str(path.relative_to(root)), f"maxReplicaCount {max_replicas} > partitionCount {m.group(1)} in bicep/main.bicep")
                for t in doc["spec"].get("triggers", []):
                    if t.get("type") == "kafka" and t["metadata"].get("allowIdleConsumers") not in (None, "false", False):
                        fail(str(path.relative_to(root)), "allowIdleConsumers must stay false: replicas beyond the partition count idle")

    # Container Apps.
    for path in sorted(deploy.glob("containerapps/*.yaml")):
        doc = yaml.safe_load(path.read_text())
        props = doc.get("properties", {})
        tgps = props.get("template", {}).get("terminationGracePeriodSeconds")
        for c in props.get("template", {}).get("containers", []):
            where = f"{path.relative_to(root)}:{doc['name']}"
            cold = c.get("args", [None])[:1] == ["cold"]
            seen = check_args(where, c.get("args", []), flags)
            env = check_env(where, c.get("env", []), env_keys, thresholds if cold else None)
            addr = None if cold else seen.get("--metrics-addr") or env.get("KVLAKE_METRICS_ADDR")
            check_endpoints(where, metrics_port(where, addr), c.get("probes", []), {}, {})
            grace = seen.get("--grace") or env.get("KVLAKE_GRACE") or "60s"
            if tgps is not None and tgps <= seconds(grace):
                fail(where, f"terminationGracePeriodSeconds {tgps} must exceed kvlake's grace {grace}")
            timeout = props.get("configuration", {}).get("replicaTimeout")
            if timeout and "--max-runtime" in seen and seconds(seen["--max-runtime"]) + seconds(grace) >= timeout:
                fail(where, f"--max-runtime {seen['--max-runtime']} + grace must end before replicaTimeout {timeout}s")

    # Dockerfile: the README's build command.
    dockerfile = (deploy / "Dockerfile").read_text()
    readme = (root / "README.md").read_text() + (root / "deploy/README.md").read_text()
    if not re.search(r"cargo build --release( --locked)? -p kvlake", dockerfile):
        fail("deploy/Dockerfile", "does not run `cargo build --release -p kvlake`")
    if "cargo build --release -p kvlake" not in readme and "cargo build --release --locked -p kvlake" not in readme:
        fail("README.md, deploy/README.md", "no longer show the Dockerfile's build command")
    if "CARGO_TARGET_DIR=/src/target" not in dockerfile:
        fail("deploy/Dockerfile", "must set CARGO_TARGET_DIR=/src/target (the repo's .cargo/config.toml points elsewhere)")

    for p in pending:
        print(f"PENDING {p}")
    for e in errors:
        print(f"FAIL {e}")
    print(f"kvlake usage: {checked} invocations/settings files checked against ingest/src/cli.rs, settings.rs "
          f"and coldpath/sql/defaults.toml, "
          f"{len(errors)} errors, {len(pending)} uses of flags still to come")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()))
