# Sluice operator targets. The two that matter most: `make run` (bounded end-to-end demo on the local
# stack) and `make test` (the whole suite). Both bring up the stack they need.

SHELL := /bin/bash
CARGO ?= cargo
RATE ?= 5000
DURATION ?= 60
MIX ?= rank=2,crawl=1,click=7
GENERATORS ?= 2
PARTITIONS ?= 6
# Backlog of the drain baselines (`make drain-mixed`, `make drain-clicks`); BASELINES=r2 (or r0,r2, …)
# runs only those of R0/R1/R2.
EVENTS ?= 3000000
BASELINES ?=
# Partitions of the local stack's event topics (`make provision`).
TOPIC_PARTITIONS ?= $(or $(SLUICE_STACK_TOPIC_PARTITIONS),6)
export CARGO_TERM_COLOR ?= never

.PHONY: help up down status up-cluster down-cluster status-cluster install build provision migrate ingest produce run test test-producers test-cluster test-chdb test-unit lint fmt clean-state fuzz-smoke bench-pg-read load load-100k drain-mixed drain-clicks validate-deploy check-monitoring

help:
	@echo "make run       bring up the stack, build, run ingest + a demo producer for DURATION s (default 60), report"
	@echo "make test      bring up the stack and run the whole test suite"
	@echo "make up|down|status   local Kafka, PostgreSQL, ClickHouse (state in .state/)"
	@echo "make up-cluster|down-cluster|status-cluster   the replicated stack with TLS: 3 Kafka brokers, 2 ClickHouse replicas + ZooKeeper, PostgreSQL primary + standby behind PgBouncer (state in .state-cluster/)"
	@echo "make ingest    run the ingest service in the foreground (Ctrl-C stops it gracefully)"
	@echo "make produce RATE=… DURATION=…   publish synthetic traffic"
	@echo "make provision create the event and dead-letter topics (sluice-ingest provision; existing ones are kept)"
	@echo "make migrate   apply PostgreSQL and ClickHouse migrations"
	@echo "make lint      cargo fmt --check and clippy -D warnings"
	@echo "make test-cluster   bring up the cluster stack and run its failure tests (a broker, a replica, ZooKeeper, the PostgreSQL primary, PgBouncer killed under traffic)"
	@echo "make test-producers   the producer examples (producers/examples/*) on the shared vectors, then against the running stack"
	@echo "make test-chdb the ClickHouse schema + analyst queries on ClickHouse 26.x (chdb-core)"
	@echo "make fuzz-smoke [FUZZ_SECONDS=60]   build the pipeline fuzz target (nightly, cargo-fuzz) and fuzz it briefly"
	@echo "make load RATE=… DURATION=… MIX=… GENERATORS=… PARTITIONS=…   a load run with a report in results/"
	@echo "make load-100k [DURATION=60]   100,000 events/s with the R0/R1/R2 baselines (docs/BENCHMARKS.md)"
	@echo "make drain-mixed [EVENTS=3000000] [BASELINES=r2]   drain baselines only: a pre-filled mixed backlog (rank 2 : crawl 1 : click 7, 1,000 tenants)"
	@echo "make drain-clicks [EVENTS=3000000] [BASELINES=r2]   drain baselines only: a pre-filled clicks-only backlog (8 tenants, Zipf-skewed links)"
	@echo "make bench-pg-read [BENCH_ARGS=…]   product-read latency at 12M aggregate rows (builds the dataset once)"

up:
	@bash infra/stack.sh up

down:
	@bash infra/stack.sh down

status:
	@bash infra/stack.sh status

# The cluster stack (infra/cluster.sh): its own ports and state dir, beside the single-node stack.
up-cluster:
	@bash infra/cluster.sh up

down-cluster:
	@bash infra/cluster.sh down

status-cluster:
	@bash infra/cluster.sh status

# The failure tests on the cluster stack (consumers/tests/cluster/, docs/operations.md "Failures measured"):
# each SIGKILLs a server under traffic and demands exact totals on every replica. .ci/run runs it after make test.
test-cluster: up-cluster
	$(CARGO) build -p sluice-producers --bin sluice-produce
	@eval "$$(bash infra/cluster.sh env)" && \
	  $(CARGO) test -p sluice-sinks --test clickhouse_cluster --test postgres_pgbouncer -- --ignored --test-threads=1 && \
	  $(CARGO) test -p sluice-consumers --test it analytics::documented_queries_match_on_each_replica_of_the_cluster -- --ignored && \
	  $(CARGO) test -p sluice-consumers --test cluster -- --ignored --test-threads=1 --nocapture

install:
	@bash infra/stack.sh install

build:
	$(CARGO) build --release --bins

# Topics come from one place, `sluice-ingest provision`, after the build (the stack script starts servers only).
provision: up build
	@eval "$$(bash infra/stack.sh env)" && ./target/release/sluice-ingest provision --partitions $(TOPIC_PARTITIONS)

migrate: provision
	@eval "$$(bash infra/stack.sh env)" && ./target/release/sluice-ingest migrate

ingest: provision
	@eval "$$(bash infra/stack.sh env)" && exec ./target/release/sluice-ingest run

produce: provision
	@eval "$$(bash infra/stack.sh env)" && ./target/release/sluice-produce synthetic --rate $(RATE) --duration $(DURATION)s

run: provision
	@RATE=$(RATE) DURATION=$(DURATION) bash infra/demo.sh

test: up test-chdb check-monitoring fuzz-smoke
	$(CARGO) test --workspace --all-targets

# The producer examples in every language (producers/examples/<lang>/, installing their locked packages):
# their own offline tests, then publish + retry through another language + ingest on the real stack, compared
# exactly with schemas/vectors/events.json. Needs the stack up (CI runs it after `make test`).
test-producers: up
	@SLUICE_PRODUCER_LANGUAGES=$${SLUICE_PRODUCER_LANGUAGES:-go,java,python,typescript} CARGO="$(CARGO)" bash producers/examples/test-all.sh

# A bounded run of the decode -> validate -> aggregate -> row encoders fuzz target from its committed
# corpus (aggregator/fuzz/README.md); needs the nightly toolchain, installs cargo-fuzz if missing.
fuzz-smoke:
	@bash aggregator/fuzz/smoke.sh

# promtool checks of the alert rules (with unit tests), the scrape config and the dashboard's PromQL.
check-monitoring:
	@bash infra/prometheus/check.sh

test-chdb:
	@bash clickhouse/test-chdb.sh

# Not part of `make test`: the first run builds a 12M-row dataset (minutes). See docs/postgres.md.
bench-pg-read: up
	$(CARGO) build --release -p sluice-loadtest --bin pg-read-bench
	@eval "$$(bash infra/stack.sh env)" && ./target/release/pg-read-bench $(BENCH_ARGS)

# Load runs (docs/BENCHMARKS.md): own topics and databases, report in results/<timestamp>/.
# LOAD_ARGS passes more flags to `sluice-load run` (e.g. LOAD_ARGS="--verify totals --keep").
load: up build
	@eval "$$(bash infra/stack.sh env)" && ./target/release/sluice-load run --rate $(RATE) --duration $(DURATION) \
	  --mix $(MIX) --generators $(GENERATORS) --partitions $(PARTITIONS) $(LOAD_ARGS)

load-100k: up build
	@eval "$$(bash infra/stack.sh env)" && ./target/release/sluice-load run --rate 100000 --duration $(DURATION) \
	  --mix $(MIX) --generators $(GENERATORS) --partitions $(PARTITIONS) --baselines $(LOAD_ARGS)

# The drain baselines alone (docs/BENCHMARKS.md "Drain baselines"): EVENTS pre-filled JSON events, then
# R0/R1/R2 (or BASELINES) each drain them; R2 into fresh databases, timed to everything durable + totals.
DRAIN_RUN = ./target/release/sluice-load run --baselines-only --prefill-events $(EVENTS) \
	  --generators $(GENERATORS) --partitions $(PARTITIONS) $(if $(BASELINES),--baseline $(BASELINES))

drain-mixed: up build
	@eval "$$(bash infra/stack.sh env)" && $(DRAIN_RUN) --mix rank=2,crawl=1,click=7 --tenants 1000 $(LOAD_ARGS)

drain-clicks: up build
	@eval "$$(bash infra/stack.sh env)" && $(DRAIN_RUN) --mix click=1 --tenants 8 $(LOAD_ARGS)

test-unit:
	$(CARGO) test --workspace --lib --bins

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean-state: down
	rm -rf .state

# Offline checks of the Dockerfile, compose file, Kubernetes manifests and Prometheus rules (see
# docs/operations.md: nothing is built or started — no Docker engine or cluster here).
validate-deploy:
	@bash infra/validate.sh
