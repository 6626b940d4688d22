#!/usr/bin/env bash
# Offline checks of the monitoring files, with promtool from Debian's `prometheus` package:
#   1. promtool check config   infra/prometheus/prometheus.yml   (local stack; also loads alerts.yml)
#                              infra/compose/prometheus/prometheus.yml (its rule file pointed at alerts.yml)
#   2. promtool check rules    infra/prometheus/alerts.yml        (the one rule file of every deployment)
#   3. promtool test rules     infra/prometheus/alerts_test.yml   (alert unit tests)
#   4. every PromQL expression of the Grafana dashboard (infra/grafana/dashboards/sluice.json, the one
#      dashboard) parses: they are written into a scratch rules file as recording rules (Grafana's $__
#      variables replaced) and given to `promtool check rules`.
#   5. every alert has a severity (critical, warning, info), summary, description and a `runbook`
#      annotation naming a heading of docs/operations.md, and alerts_test.yml has, for every alert, a
#      case where it fires and one where it stays quiet.
# That the metric names exist in a running ingest is checked by the acceptance test
# `cargo test -p sluice-consumers --test it observability`.
#
# promtool: $PROMTOOL, else `promtool` on PATH, else the one under .state/tools/ — unpacked there from
# the Debian package (apt-get download + dpkg-deb -x, ~19 MB, once). Unpacked rather than installed:
# `apt-get install prometheus` would also register and start a Prometheus service on :9090.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
state="${SLUICE_STATE_DIR:-$repo/.state}"
tools="$state/tools/prometheus"

find_promtool() {
    if [[ -n "${PROMTOOL:-}" ]]; then
        echo "$PROMTOOL"
    elif command -v promtool >/dev/null 2>&1; then
        command -v promtool
    elif [[ -x "$tools/usr/bin/promtool" ]]; then
        echo "$tools/usr/bin/promtool"
    fi
}

install_promtool() {
    echo "promtool not found: unpacking Debian's prometheus package into $tools" >&2
    if ! apt-cache policy prometheus 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        apt-get update -qq
    fi
    local tmp
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' RETURN
    (cd "$tmp" || exit 1; apt-get download -qq prometheus 2>&1 | { grep -v 'unsandboxed' >&2 || true; }) || true
    local deb
    deb="$(find "$tmp" -maxdepth 1 -name 'prometheus_*.deb' | head -n1)"
    [[ -n "$deb" ]] || { echo "cannot download the prometheus package (apt-get download prometheus)" >&2; return 1; }
    rm -rf "$tools"
    mkdir -p "$tools"
    dpkg-deb -x "$deb" "$tools"
}

promtool="$(find_promtool)"
if [[ -z "$promtool" ]]; then
    install_promtool
    promtool="$(find_promtool)"
fi
[[ -x "$promtool" ]] || { echo "promtool unavailable" >&2; exit 1; }
"$promtool" --version 2>&1 | head -n1

cd "$here"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
"$promtool" check config prometheus.yml
# The compose config names the rules by their path in the container (where compose mounts this
# directory's alerts.yml); check a copy that points at the file here.
sed "s|/etc/prometheus/alerts.yml|$here/alerts.yml|" "$repo/infra/compose/prometheus/prometheus.yml" \
    >"$scratch/compose-prometheus.yml"
grep -q "$here/alerts.yml" "$scratch/compose-prometheus.yml" \
    || { echo "infra/compose/prometheus/prometheus.yml does not load /etc/prometheus/alerts.yml" >&2; exit 1; }
"$promtool" check config "$scratch/compose-prometheus.yml"
"$promtool" check rules alerts.yml
"$promtool" test rules alerts_test.yml

# 4. Dashboard expressions as recording rules.
python3 - "$repo/infra/grafana/dashboards/sluice.json" "$scratch/dashboard_rules.yml" <<'PY'
import json, re, sys

dashboard = json.load(open(sys.argv[1]))
exprs = []

def walk(node, where):
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str) and node["expr"].strip():
            exprs.append((where, node["expr"]))
        for key, value in node.items():
            walk(value, node.get("title", where) if key == "targets" else where)
    elif isinstance(node, list):
        for item in node:
            walk(item, where)

walk(dashboard.get("panels", []), "panel")
for var in dashboard.get("templating", {}).get("list", []):
    query = var.get("query")
    if isinstance(query, dict):
        query = query.get("query")
    if isinstance(query, str) and query.startswith("label_values("):
        # label_values(metric{...}, label): the selector must parse.
        exprs.append(("variable " + var["name"], query[len("label_values("):].rsplit(",", 1)[0]))
if not exprs:
    sys.exit("no expressions found in the dashboard")

def concrete(expr):
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m").replace("$__range", "1h")
    return re.sub(r"\$\{?(\w+)\}?", ".*", expr)  # template variables: always inside =~ matchers

with open(sys.argv[2], "w") as out:
    out.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, (where, expr) in enumerate(exprs):
        out.write(f"      - record: dashboard:expr_{i}\n")
        out.write("        expr: " + json.dumps(concrete(expr)) + "\n")
print(f"dashboard: {len(exprs)} expressions", file=sys.stderr)
PY
"$promtool" check rules "$scratch/dashboard_rules.yml"

# 5. Labels and annotations of every alert, its runbook heading, and its unit-test coverage. Plain text
# matching (no YAML library needed), for the layout of alerts.yml and alerts_test.yml.
python3 - "$repo" alerts.yml alerts_test.yml <<'PY'
import os, re, sys

repo, rules, tests = sys.argv[1], sys.argv[2], sys.argv[3]
def slug(heading):
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
ops = "docs/operations.md"
anchors = {slug(l.lstrip("#")) for l in open(os.path.join(repo, ops)) if re.match(r"#{1,6} ", l)}
problems = []
alerts = []
for block in re.split(r"^\s*- alert:", open(rules).read(), flags=re.M)[1:]:
    name = block.split()[0]
    alerts.append(name)
    block = re.split(r"^\s*- (?:alert|record):", block, flags=re.M)[0]
    if not re.search(r"^\s+severity: (critical|warning|info)\s*$", block, re.M):
        problems.append(f"{name}: no severity label critical, warning or info")
    for key in ("summary", "description"):
        if not re.search(rf"^\s+{key}: \S", block, re.M):
            problems.append(f"{name}: no {key} annotation")
    m = re.search(r"^\s+runbook: \"?([^\s\"]+)", block, re.M)
    if not m:
        problems.append(f"{name}: no runbook annotation")
    elif m.group(1) != f"{ops}#{slug(m.group(1).partition('#')[2])}" or m.group(1).partition("#")[2] not in anchors:
        problems.append(f"{name}: runbook {m.group(1)} is not a heading of {ops}")
if len(set(alerts)) != len(alerts):
    problems.append(f"alert names are not unique: {alerts}")

# Every alert_rule_test case: its alertname, and whether it expects the alert firing or quiet.
fires, quiet = set(), set()
cases = re.split(r"^\s*- \{?eval_time:", open(tests).read(), flags=re.M)[1:]
for case in cases:
    case = re.split(r"^\s*- (?:name|interval):", case, flags=re.M)[0]
    m = re.search(r"alertname: (\w+)", case)
    if not m:
        problems.append(f"{tests}: a test case without alertname"); continue
    (quiet if re.search(r"exp_alerts: \[\]", case) else fires).add(m.group(1))
for name in alerts:
    if name not in fires: problems.append(f"{tests}: no case where {name} fires")
    if name not in quiet: problems.append(f"{tests}: no case where {name} stays quiet")
for name in (fires | quiet) - set(alerts):
    problems.append(f"{tests}: tests an alert {name} that {rules} does not define")
for p in problems:
    print(p, file=sys.stderr)
print(f"alerts: {len(alerts)}, each with labels, annotations, a runbook in {ops} and firing/quiet tests "
      f"({len(cases)} cases): {len(problems)} problems", file=sys.stderr)
sys.exit(1 if problems or not alerts else 0)
PY
echo "monitoring checks passed"
