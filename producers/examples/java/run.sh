#!/usr/bin/env bash
# The Java example's entry point (README.md):
#   run.sh send --brokers HOST:PORT --vectors FILE --topic-rank T --topic-crawl T --topic-click T
# Builds on first use (Maven, into target/; pinned versions, strict checksums), then runs the producer.
# Stdout carries only the JSON delivery lines; Maven's and Kafka's messages go to stderr.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
jar="$here/target/sluice-producer-java-0.1.0.jar"

command -v mvn >/dev/null || { echo "run.sh: needs Maven 3.8+ (mvn) and a JDK 17+ on PATH" >&2; exit 1; }
# Build when the jar is missing or older than the pom or a source file.
if [[ ! -f "$jar" || -n "$(find "$here/pom.xml" "$here/src/main" -newer "$jar" -print -quit)" ]]; then
  # Quiet on success; the whole log on failure.
  if ! log="$(mvn -B -C -ntp -Dstyle.color=never -f "$here/pom.xml" package -DskipTests 2>&1)"; then
    printf '%s\n' "$log" >&2
    echo "run.sh: the Maven build failed (above)" >&2
    exit 1
  fi
fi
export SLUICE_SCHEMAS_DIR="${SLUICE_SCHEMAS_DIR:-$repo/schemas/json}"
exec java -jar "$jar" "$@"
