#!/usr/bin/env bash
# CI load smoke (issue 8, "Checked by"): a few hundred QUIC devices and a few hundred WebSocket
# fans for ~10 s against a real `flevum serve` (throwaway journal, fsync on, free loopback ports),
# with `flevum-load e2e --assert`: exits non-zero when a fix is lost, a device or fan failed, a
# fan resynced or was closed, or no fix reached the fans. Timings are reported, never asserted.
#
# Uses already built binaries (CI: the debug ones `cargo test --workspace` built; no second
# cargo build with other feature resolution). BIN_DIR=target/release to use release builds.
# Sizes: SMOKE_RIDERS (300), SMOKE_FANS (300), SMOKE_SECONDS (10).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN_DIR=${BIN_DIR:-target/debug}
RIDERS=${SMOKE_RIDERS:-300}
FANS=${SMOKE_FANS:-300}
SECONDS_=${SMOKE_SECONDS:-10}
for b in flevum flevum-load; do
    [ -x "$BIN_DIR/$b" ] || { echo "smoke: $BIN_DIR/$b missing (run cargo test --workspace first)" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/flevum-smoke.XXXXXX)
LOG=$WORK/server.log
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

export FLEVUM_ADMIN_TOKEN=smoke-admin-token-0123456789abcdef
# Port 0: the server picks free ports and prints them.
FLEVUM_JOURNAL_DIR=$WORK/journal FLEVUM_GATEWAY_LISTEN=127.0.0.1:0 FLEVUM_INGEST_LISTEN=127.0.0.1:0 \
    "$BIN_DIR/flevum" serve --config load-tests/server.toml >"$LOG" 2>&1 &
SERVER_PID=$!

# Running and not a zombie (an unreaped child still answers `kill -0`).
alive() { [ -r "/proc/$1/stat" ] && ! grep -q ') Z ' "/proc/$1/stat"; }

# `GET /readyz` with bash's /dev/tcp (no curl needed): 0 when the server answers 200.
ready() {
    local host=${1%:*} port=${1##*:} status
    exec 3<>"/dev/tcp/$host/$port" || return 1
    printf 'GET /readyz HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$1" >&3
    read -r _ status _ <&3 || true
    exec 3<&-
    [ "$status" = 200 ]
}
GATEWAY= INGEST=
for _ in $(seq 300); do
    alive "$SERVER_PID" || { echo "smoke: server exited" >&2; cat "$LOG" >&2; exit 1; }
    GATEWAY=$(sed -n 's|.*live map and API on http://\([0-9.:]*\)/.*|\1|p' "$LOG" | tail -1)
    INGEST=$(sed -n 's|.*devices connect to \([0-9.:]*\);.*|\1|p' "$LOG" | tail -1)
    if [ -n "$GATEWAY" ] && [ -n "$INGEST" ] && ready "$GATEWAY" 2>/dev/null; then
        break
    fi
    sleep 0.1
done
ready "$GATEWAY" 2>/dev/null || { echo "smoke: server not ready after 30 s" >&2; cat "$LOG" >&2; exit 1; }
echo "smoke: $BIN_DIR/flevum serve (pid $SERVER_PID) on gateway $GATEWAY, ingest $INGEST" >&2

# Probe fans watch the whole race; the others follow 5 riders each with an empty viewport.
set +e
RUST_BACKTRACE=0 RUST_LIB_BACKTRACE=0 "$BIN_DIR/flevum-load" e2e --assert --gateway "$GATEWAY" --ingest "$INGEST" --server-log "$LOG" \
    --server-pid "$SERVER_PID" --course configs/courses/flevum_demo.gpx --race smoke \
    --riders "$RIDERS" --fans "$FANS" --probes 10 --viewport empty --follow 5 \
    --riders-view "$RIDERS" --duration-s "$SECONDS_" --connect-rate 1000 --out "$WORK/smoke.json"
rc=$?
set -e
if ! alive "$SERVER_PID"; then
    echo "smoke: the server died during the run" >&2
    rc=1
fi
if [ "$rc" != 0 ]; then
    echo "smoke: FAILED (exit $rc); server log:" >&2
    tail -50 "$LOG" >&2
    exit 1
fi
echo "smoke: passed" >&2
