#!/usr/bin/env bash
# Builds the web page into web/dist/ and regenerates gateway/src/web_assets.rs from it.
# Needs Node 20.19+ and npm; `cargo build` itself does not (dist/ and web_assets.rs are committed).
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
npm run build
