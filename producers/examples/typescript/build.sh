#!/usr/bin/env bash
# Installs the locked dependencies (npm ci, into node_modules/) and compiles (tsc, into dist/) when
# either is missing or out of date. Shared by run.sh and test.sh; its output goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "$tool not found: needs Node.js 20.19.4+ with npm" >&2; exit 1; }
done
node -e 'const [a,b,c]=process.versions.node.split(".").map(Number);
  if (a<20||(a===20&&(b<19||(b===19&&c<4)))) { console.error(`Node ${process.versions.node} is too old: needs 20.19.4+`); process.exit(1) }'
# npm ci installs exactly package-lock.json; node_modules/.package-lock.json is npm's record of it.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
if [[ ! -f dist/src/main.js || -n "$(find src test tsconfig.json package-lock.json -newer dist/src/main.js -print -quit)" ]]; then
  ./node_modules/.bin/tsc -p tsconfig.json >&2
  touch dist/src/main.js
fi
