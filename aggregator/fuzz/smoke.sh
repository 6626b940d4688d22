#!/usr/bin/env bash
# Bounded fuzz smoke run of the `pipeline` target, part of `make test` (`make fuzz-smoke`): builds it with
# cargo-fuzz on the nightly toolchain (installing cargo-fuzz if missing) and fuzzes for FUZZ_SECONDS
# (default 60) starting from the committed corpus. New inputs go to a temporary directory, so the
# committed corpus is not modified; a crash is saved under aggregator/fuzz/artifacts/pipeline/ and fails
# the run (reproduce: cargo +nightly fuzz run pipeline <that file>). FUZZ_SANITIZER (default none, see
# README.md for why) is passed to cargo fuzz.
set -euo pipefail
cd "$(dirname "$0")"
budget=${FUZZ_SECONDS:-60}
sanitizer=${FUZZ_SANITIZER:-none}

if ! command -v rustup >/dev/null || ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz-smoke: cargo fuzz needs a nightly Rust toolchain (it passes -Z flags and sanitizer" \
         "coverage options); install one with: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: cargo-fuzz is missing; installing it: cargo install cargo-fuzz --locked" >&2
    cargo install cargo-fuzz --locked
fi

# The fuzz crate is its own workspace with its own target directory (its artifacts are built with
# nightly and coverage flags; they would only churn the main one).
unset CARGO_TARGET_DIR
# Its own Cargo.lock, too: a dependency added to the main workspace's crates must be added here as well,
# or cargo would resolve it afresh at every run (cargo fuzz has no --locked of its own). Checked by the
# nightly cargo that cargo fuzz builds with.
if ! cargo +nightly tree --locked >/dev/null; then
    echo "fuzz-smoke: aggregator/fuzz/Cargo.lock is out of date with the crates it builds; update it" \
         "with: (cd aggregator/fuzz && cargo update --workspace), and commit it" >&2
    exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo +nightly fuzz run --sanitizer "$sanitizer" pipeline "$work" corpus/pipeline -- \
    -max_total_time="$budget" -timeout=10 -dict=pipeline.dict -print_final_stats=1
