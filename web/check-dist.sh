#!/usr/bin/env bash
# Rebuilds the page into a temp dir and fails if it differs from the committed web/dist/ or
# gateway/src/web_assets.rs (someone changed web/src without running web/build.sh).
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[ -d node_modules ] || npm ci --no-audit --no-fund
npx tsc --noEmit
npx vite build --outDir "$tmp/dist" --emptyOutDir --logLevel warn
node scripts/gen-web-assets.mjs "$tmp/dist" "$tmp/web_assets.rs" >/dev/null
# The generated Rust names files relative to web/dist, so it is comparable as is.
status=0
diff -r dist "$tmp/dist" || status=1
diff ../gateway/src/web_assets.rs "$tmp/web_assets.rs" || status=1
if [ "$status" -ne 0 ]; then
  echo "web/dist or gateway/src/web_assets.rs is stale: run web/build.sh and commit" >&2
  exit 1
fi
echo "web/dist is up to date"
