#!/usr/bin/env bash
# Offline checks of the monitoring files, with promtool from Debian's `prometheus` package:
#   1. promtool check config   infra/prometheus/prometheus.yml   (also loads alerts.yml)
#   2. promtool check rules    infra/prometheus/alerts.yml
#   3. promtool test rules     infra/prometheus/alerts_test.yml  (alert unit tests)
#   4. every PromQL expression of the Grafana dashboard parses: they are written into a scratch rules
#      file as recording rules (Grafana's $__ variables replaced) and given to `promtool check rules`.
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
    (cd "$tmp" && apt-get download -qq prometheus 2>&1 | grep -v 'unsandboxed' >&2 || true)
    local deb
    deb="$(ls "$tmp"/prometheus_*.deb 2>/dev/null | head -n1)"
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
"$promtool" check config prometheus.yml
"$promtool" check rules alerts.yml
"$promtool" test rules alerts_test.yml

# 4. Dashboard expressions as recording rules.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
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

# 5. Every alert's runbook_url names a heading of the document it points to (GitHub anchors).
python3 - "$repo" alerts.yml <<'PY'
import os, re, sys

repo, rules = sys.argv[1], sys.argv[2]
def slug(heading):
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
bad = 0
urls = re.findall(r"runbook_url:\s*\"?([^\s\"]+)", open(rules).read())
for url in urls:
    path, _, anchor = url.partition("#")
    doc = os.path.join(repo, path)
    if not os.path.exists(doc):
        print(f"runbook {url}: no file {path}", file=sys.stderr); bad += 1; continue
    anchors = {slug(l.lstrip("#")) for l in open(doc) if re.match(r"#{1,6} ", l)}
    if anchor and anchor not in anchors:
        print(f"runbook {url}: no heading with anchor #{anchor} in {path}", file=sys.stderr); bad += 1
if not urls:
    sys.exit("no runbook_url in " + rules)
print(f"runbooks: {len(urls)} links, {bad} broken", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
echo "monitoring checks passed"
