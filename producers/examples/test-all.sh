#!/usr/bin/env bash
# `make test-producers`: every producer example's own offline tests (producers/examples/<lang>/test.sh,
# which install the example's locked packages first), then the cross-language test against the real
# stack (consumers/tests/it/producers.rs: publish the shared vectors through each language, retry them
# through another, ingest, compare both databases exactly). The stack must be up (`make up`; CI's
# `make test` brings it up first). A missing toolchain fails; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
CARGO="${CARGO:-cargo}"
langs=()
for dir in producers/examples/*/; do
    lang="$(basename "$dir")"
    [[ -f "$dir/run.sh" ]] || continue
    [[ -f "$dir/test.sh" ]] || { echo "test-producers: $dir has run.sh but no test.sh" >&2; exit 1; }
    langs+=("$lang")
done
echo "test-producers: languages: ${langs[*]}"
for lang in "${langs[@]}"; do
    echo "test-producers: ${lang}: offline tests"
    start=$SECONDS
    bash "producers/examples/$lang/test.sh"
    echo "test-producers: ${lang}: offline tests passed in $((SECONDS - start)) s"
done
echo "test-producers: real stack (consumers/tests/it/producers.rs)"
eval "$(bash infra/stack.sh env)"
# --workspace (not -p sluice-consumers): the same feature set as `make test`'s build, so CI reuses its test
# binary instead of building another one.
"$CARGO" test --workspace --test it producers:: -- --ignored --nocapture
