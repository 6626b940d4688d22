#!/usr/bin/env bash
# `make run`: a bounded end-to-end demo on the local stack (which `make run` has already brought up and
# built). Starts sluice-ingest, publishes synthetic rank/crawl/click traffic at RATE events/s for DURATION
# seconds, prints a progress line every 5 s (ingest rate, records consumed, events in PostgreSQL
# aggregates, rows in ClickHouse), waits for ingest to catch up, shows sample product and analyst
# queries, then stops ingest gracefully (SIGTERM) and prints a summary. Ctrl-C stops everything early,
# gracefully. The demo itself is `sluice-load demo` (loadtest/src/demo.rs); this only hands it the
# stack's addresses.
set -euo pipefail

# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
eval "$(bash infra/stack.sh env)"
exec "$REPO/target/release/sluice-load" demo --rate "${RATE:-5000}" --duration "${DURATION:-60}" \
  --state-dir "$STATE"
