#!/usr/bin/env bash
# The Java example's own tests (JUnit 5 through Maven Surefire): the shared vectors of
# schemas/vectors/events.json (JSON, keys, partitions by kafka-clients' partitioner, refusals) and the
# library's rules. Needs no broker.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v mvn >/dev/null || { echo "test.sh: needs Maven 3.8+ (mvn) and a JDK 17+ on PATH" >&2; exit 1; }
exec mvn -B -C -ntp -Dstyle.color=never -f "$here/pom.xml" test "$@"
