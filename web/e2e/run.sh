#!/usr/bin/env bash
# Installs the web dev dependencies (playwright-core, ws, …) and runs the browser e2e test.
# Needs /usr/bin/chromium (apt-get install -y chromium) or CHROMIUM=/path. Server under test:
# FLEVUM_URL, else FLEVUM_BIN (`serve --demo`), else the mock server. Builds dist if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
npm ci --no-audit --no-fund
[ -f dist/index.html ] || npm run build
node --test --test-concurrency=1 e2e/
