//! The monitoring files against a running ingest. Every metric that the Grafana dashboard's PromQL
//! (`infra/grafana/dashboards/sluice.json`) and the alert rules (`infra/prometheus/alerts.yml`)
//! reference must be exported by `sluice-ingest`'s `/metrics` — histograms through their `_bucket`,
//! `_sum` and `_count` series — with the labels they group by and the label values they select, so a
//! renamed metric, label or label value fails here instead of leaving an empty panel or a silent alert.
//! The same run checks that the dashboard shows every family the code defines, that the exposition
//! follows Prometheus conventions (HELP and TYPE per family, `_total` counters) and the project's naming
//! scheme (`sluice_<component>_...`, [`sluice_consumers::metrics::follows_scheme`]), and that
//! `docs/observability.md` documents every exported family. PromQL syntax itself is checked offline by
//! `infra/prometheus/check.sh` (promtool).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use sluice_schemas::{EventKind, ENCODING_HEADER};

use crate::support::{metric_value, TestStack, TrafficShape};

/// Every family the code defines (the constants, not copies of their strings): the dashboard must show
/// each one and a running ingest must export each one.
const FAMILIES: &[&str] = &[
    sluice_consumers::metrics::RECORDS_CONSUMED,
    sluice_consumers::metrics::EVENTS_AGGREGATED,
    sluice_consumers::metrics::DUPLICATES,
    sluice_consumers::metrics::RECORDS_REPLAYED,
    sluice_consumers::metrics::DEDUP_KEYS,
    sluice_consumers::metrics::RECORDS_REJECTED,
    sluice_consumers::metrics::FLUSHES,
    sluice_consumers::metrics::FLUSH_SECONDS,
    sluice_consumers::metrics::FLUSH_INTERVAL_SECONDS,
    sluice_consumers::metrics::BUFFERED_BYTES,
    sluice_consumers::metrics::BUFFERED_EVENTS,
    sluice_consumers::metrics::PAUSED,
    sluice_consumers::metrics::REBALANCES,
    sluice_consumers::metrics::ASSIGNED_PARTITIONS,
    sluice_consumers::metrics::FETCH_LAG,
    sluice_consumers::metrics::CONSUMER_LAG,
    sluice_consumers::metrics::BUFFERED_KEYS,
    sluice_consumers::metrics::READY,
    sluice_consumers::metrics::MISROUTED,
    sluice_consumers::metrics::OLDEST_UNCOMMITTED_AGE,
    sluice_sinks::metrics::SINK_WRITE_SECONDS,
    sluice_sinks::metrics::SINK_ROWS,
    sluice_sinks::metrics::SINK_INSERT_FALLBACKS,
    sluice_sinks::metrics::SINK_ERRORS,
    sluice_sinks::metrics::SINK_RETRIES,
    sluice_sinks::metrics::DEAD_LETTERS,
];

/// Labels every scraped series gets from Prometheus (`job`, `instance`) or every histogram has (`le`).
const TARGET_LABELS: &[&str] = &["job", "instance", "le"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_use_only_exported_metrics() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dashboard = std::fs::read_to_string(root.join("infra/grafana/dashboards/sluice.json"))?;
    let alerts = std::fs::read_to_string(root.join("infra/prometheus/alerts.yml"))?;
    let docs = std::fs::read_to_string(root.join("docs/observability.md"))?;

    let mut exprs: Vec<(String, String)> = dashboard_exprs(&dashboard)?
        .into_iter()
        .map(|e| ("dashboard".to_owned(), e))
        .collect();
    let dashboard_names: BTreeSet<String> =
        exprs.iter().flat_map(|(_, e)| metric_names(e)).collect();
    let rules = alert_exprs(&alerts);
    let alert_count = alerts
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    assert!(alert_count >= 7, "alerts.yml: {alert_count} alerts");
    assert_eq!(rules.len(), alert_count, "one expr per alert: {rules:?}");
    exprs.extend(rules.into_iter().map(|e| ("alerts.yml".to_owned(), e)));
    assert!(exprs.len() >= 30, "found {} expressions", exprs.len());

    // A running ingest with a little traffic, one re-sent event and one malformed record.
    let stack = TestStack::new("observability", 2).await?;
    // An explicit budget: the default depends on the machine's memory.
    let ingest = stack.spawn_ingest("a", &[("SLUICE_MAX_BUFFERED_BYTES", "536870912")])?;
    let traffic = stack.start_traffic(TrafficShape::seed(11).rate(5_000).events(300))?;
    let producer = stack.producer(sluice_schemas::Encoding::Json)?;
    producer
        .send_raw(
            stack.topic(EventKind::Click),
            Some(b"poison"),
            b"{not json",
            &[(ENCODING_HEADER, b"json".as_slice())],
        )
        .await?;
    let published = traffic.join()?.len() + 1;
    stack.wait_caught_up(Duration::from_secs(60)).await?;

    // Counters are published once a second and the lag gauges follow librdkafka's statistics (every
    // second), so wait until everything referenced is there (or time out and report what is missing).
    let wanted: BTreeSet<String> = exprs.iter().flat_map(|(_, e)| metric_names(e)).collect();
    let exposition = ingest
        .metrics_when(Duration::from_secs(20), |m| {
            let series = Exposition::parse(m);
            metric_value(m, sluice_consumers::metrics::RECORDS_CONSUMED, &[]) >= published as f64
                && metric_value(m, sluice_sinks::metrics::DEAD_LETTERS, &[]) >= 1.0
                && metric_value(m, sluice_consumers::metrics::DEDUP_BYTES, &[]) > 0.0
                && wanted.iter().all(|n| series.exports(n))
        })
        .await?;
    let series = Exposition::parse(&exposition);

    // The dedup windows' bytes come out of the batches' share of the budget: 512 MiB less librdkafka's
    // eighth (64 MiB) and the known aggregate keys' sixty-fourth (8 MiB) is 440 MiB. Nothing is being
    // read any more, so the windows (and the gauges) hold still.
    let dedup = metric_value(&exposition, sluice_consumers::metrics::DEDUP_BYTES, &[]);
    assert_eq!(
        metric_value(
            &exposition,
            sluice_consumers::metrics::BATCH_BUDGET_BYTES,
            &[]
        ),
        (440 * 1024 * 1024) as f64 - dedup,
        "batch budget with {dedup} bytes in the dedup windows"
    );

    let mut problems = Vec::new();
    // The dashboard shows every family the code defines.
    let shown: BTreeSet<String> = dashboard_names.iter().map(|n| family_of(n)).collect();
    for family in FAMILIES.iter().filter(|f| !shown.contains(**f)) {
        problems.push(format!(
            "`{family}` (defined in code) is not on the dashboard"
        ));
    }
    for (source, expr) in &exprs {
        for name in metric_names(expr) {
            if !series.exports(&name) {
                problems.push(format!("{source}: `{name}` is not exported (in `{expr}`)"));
                continue;
            }
            for (label, value) in exact_matchers(expr, &name) {
                if !series.has_label_value(&name, &label, &value) {
                    problems.push(format!(
                        "{source}: no `{name}` series with {label}=\"{value}\" (in `{expr}`)"
                    ));
                }
            }
        }
        let names = metric_names(expr);
        for label in grouping_labels(expr) {
            if !TARGET_LABELS.contains(&label.as_str())
                && !names.iter().any(|n| series.has_label(n, &label))
            {
                problems.push(format!(
                    "{source}: groups by `{label}`, which none of {names:?} has (in `{expr}`)"
                ));
            }
        }
    }
    for family in FAMILIES {
        if !series.exports(family) {
            problems.push(format!("`{family}` (defined in code) is not exported"));
        }
    }
    // Conventions, and the docs, for every family the process exports.
    for (family, kind) in &series.types {
        if !series.help.contains(family) {
            problems.push(format!("`{family}` has no # HELP"));
        }
        if kind == "counter" && !family.ends_with("_total") {
            problems.push(format!("counter `{family}` does not end in _total"));
        }
        if !sluice_consumers::metrics::follows_scheme(family) {
            problems.push(format!(
                "`{family}` is outside the naming scheme sluice_<component>_<what> (docs/observability.md \"Naming\")"
            ));
        }
        if family.starts_with("sluice_") && !docs.contains(&format!("`{family}`")) {
            problems.push(format!(
                "`{family}` is not documented in docs/observability.md"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n\nexposition:\n{exposition}",
        problems.join("\n")
    );

    let status = ingest.terminate(Duration::from_secs(30))?;
    assert!(status.success(), "ingest exit status {status}");
    stack.cleanup().await
}

/// The exposition, by metric name: each series' labels, and each family's `# TYPE` and `# HELP`.
struct Exposition {
    series: BTreeMap<String, Vec<BTreeMap<String, String>>>,
    types: BTreeMap<String, String>,
    help: BTreeSet<String>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut series: BTreeMap<String, Vec<BTreeMap<String, String>>> = BTreeMap::new();
        let mut types = BTreeMap::new();
        let mut help = BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                if let Some((name, kind)) = rest.split_once(' ') {
                    types.insert(name.to_owned(), kind.trim().to_owned());
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                help.insert(rest.split(' ').next().unwrap_or_default().to_owned());
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let Some((head, _value)) = line.rsplit_once(' ') else {
                continue;
            };
            let (name, labels) = match head.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (head, BTreeMap::new()),
            };
            series.entry(name.to_owned()).or_default().push(labels);
        }
        Exposition {
            series,
            types,
            help,
        }
    }

    /// A series of this exact name, or — for a histogram's base name — its `_bucket` series.
    fn exports(&self, name: &str) -> bool {
        self.series.contains_key(name) || self.series.contains_key(&format!("{name}_bucket"))
    }

    fn labels_of(&self, name: &str) -> impl Iterator<Item = &BTreeMap<String, String>> {
        let bucket = format!("{name}_bucket");
        self.series
            .get(name)
            .or_else(|| self.series.get(&bucket))
            .into_iter()
            .flatten()
    }

    fn has_label(&self, name: &str, label: &str) -> bool {
        self.labels_of(name).any(|l| l.contains_key(label))
    }

    fn has_label_value(&self, name: &str, label: &str, value: &str) -> bool {
        self.labels_of(name)
            .any(|l| l.get(label).map(String::as_str) == Some(value))
    }
}

/// `a="x",b="y"` (the exporter escapes no quotes in our bounded label values).
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    text.split("\",")
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.trim().to_owned(), v.trim_matches('"').to_owned()))
        })
        .collect()
}

/// The family a referenced name belongs to (`x_bucket` → `x` when it is a histogram series).
fn family_of(name: &str) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if FAMILIES.contains(&base) {
                return base.to_owned();
            }
        }
    }
    name.to_owned()
}

/// Every `expr` string in the dashboard (panels' targets), and the metric selectors of its
/// `label_values(...)` template variables.
fn dashboard_exprs(json: &str) -> anyhow::Result<Vec<String>> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr" | "query" | "definition", serde_json::Value::String(s))
                            if !s.trim().is_empty() =>
                        {
                            out.push(s.clone())
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let dashboard: serde_json::Value = serde_json::from_str(json)?;
    let mut out = Vec::new();
    walk(&dashboard, &mut out);
    Ok(out)
}

/// The `expr` of every rule in a Prometheus rule file: inline (`expr: x`) or a block scalar
/// (`expr: |` followed by more-indented lines). Enough for our file; the count is checked against the
/// number of alerts.
fn alert_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let indent = line.len() - line.trim_start().len();
        if let Some(value) = line.trim_start().strip_prefix("expr:") {
            let value = value.trim();
            if value.starts_with('|') || value.starts_with('>') {
                let mut block = Vec::new();
                while i + 1 < lines.len() {
                    let next = lines[i + 1];
                    let next_indent = next.len() - next.trim_start().len();
                    if !next.trim().is_empty() && next_indent <= indent {
                        break;
                    }
                    block.push(next.trim());
                    i += 1;
                }
                out.push(block.join("\n").trim().to_owned());
            } else {
                out.push(value.to_owned());
            }
        }
        i += 1;
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The `sluice_*` metric names an expression references.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("sluice_") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let end = tail.find(|c: char| !is_ident(c)).unwrap_or(tail.len());
        if !before.is_some_and(is_ident) {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// `label="value"` matchers on `name{...}` selectors (exact matches only; regexes may hold variables).
fn exact_matchers(expr: &str, name: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find(name) {
        let tail = &rest[at + name.len()..];
        rest = tail;
        let Some(inner) = tail.strip_prefix('{') else {
            continue;
        };
        let Some(close) = inner.find('}') else {
            continue;
        };
        for matcher in inner[..close].split(',') {
            if let Some((label, value)) = matcher.split_once('=') {
                if label.ends_with(['!', '=', '~']) || value.starts_with('~') {
                    continue;
                }
                out.push((
                    label.trim().to_owned(),
                    value.trim().trim_matches('"').to_owned(),
                ));
            }
        }
    }
    out
}

/// The labels of every `by (...)` clause.
fn grouping_labels(expr: &str) -> BTreeSet<String> {
    let mut labels = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("by (") {
        let tail = &rest[at + 4..];
        let close = tail.find(')').unwrap_or(tail.len());
        labels.extend(
            tail[..close]
                .split(',')
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned),
        );
        rest = &tail[close..];
    }
    labels
}

#[test]
fn extraction_helpers() {
    assert_eq!(
        metric_names("sum(rate(sluice_a_total{job=\"sluice-x\"}[1m])) / xsluice_b + sluice_c:d"),
        ["sluice_a_total", "sluice_c:d"]
            .into_iter()
            .map(str::to_owned)
            .collect()
    );
    assert_eq!(
        exact_matchers(
            "increase(sluice_f_total{outcome=\"committed\", job=~\"$job\", x!=\"y\"}[5m])",
            "sluice_f_total"
        ),
        vec![("outcome".to_owned(), "committed".to_owned())]
    );
    assert_eq!(
        grouping_labels("sum by (le, sink) (x) and on (job) max by (topic) (y)"),
        ["le", "sink", "topic"]
            .into_iter()
            .map(str::to_owned)
            .collect()
    );
    let rules = "  - alert: A\n    expr: up == 0\n  - alert: B\n    expr: |\n      a\n      and b\n    for: 5m\n";
    assert_eq!(alert_exprs(rules), vec!["up == 0", "a\nand b"]);
}
