#!/usr/bin/env bash
# Times the organiser setup of a big race: flevum-load creates a race of N riders (default
# 10,000) and issues one device token per rider, one HTTP request each, against a fresh
# `flevum serve`. Prints the wall time until the fleet starts and the server's CPU for it.
# Usage: load-tests/token-setup.sh [path/to/flevum]   (N=… for another size)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
cargo build --release -p flevum -p flevum-load
BIN=${1:-$ROOT/target/release/flevum}
COURSE=${COURSE:-$ROOT/../shared/data/real/course_ragbrai_day4_gravel_128km.gpx}
[ -f "$COURSE" ] || COURSE=$ROOT/configs/courses/flevum_demo.gpx
export FLEVUM_ADMIN_TOKEN=${FLEVUM_ADMIN_TOKEN:-load-test-admin-token-0123456789}
J=$(mktemp -d /tmp/flevum-token-setup.XXXXXX)
LOG=$J/server.log
FLEVUM_JOURNAL_DIR=$J/journal FLEVUM_GATEWAY_LISTEN=127.0.0.1:8091 FLEVUM_INGEST_LISTEN=127.0.0.1:4494 \
    "$BIN" serve --config load-tests/server.toml >"$LOG" 2>&1 &
SP=$!
trap 'kill $SP 2>/dev/null; wait $SP 2>/dev/null; rm -rf "$J"' EXIT
for _ in $(seq 100); do
    grep -q "certificate sha256" "$LOG" 2>/dev/null && curl -sf http://127.0.0.1:8091/readyz >/dev/null && break
    sleep 0.1
done
cpu() { awk '{print $14 + $15}' "/proc/$SP/stat"; }
t0=$(date +%s.%N) c0=$(cpu)
"$ROOT/target/release/flevum-load" devices --server-log "$LOG" --server-pid "$SP" --course "$COURSE" \
    --gateway 127.0.0.1:8091 --ingest 127.0.0.1:4494 --race setup --devices "${N:-10000}" \
    --interval-ms 1000 --duration-s 1 --ramp 0 --drain-s 5 2>&1 | while read -r line; do
    case "$line" in
    fleet:*)
        echo "setup of ${N:-10000} riders: $(echo "$(date +%s.%N) - $t0" | bc) s wall, server CPU $(( $(cpu) - c0 )) ticks (1/100 s)"
        ;;
    esac
done
