#!/usr/bin/env bash
# Flevum fan-out alone: one `flevum serve` (load-tests/server.toml) and one `flevum-load fans`
# swarm on it; prints frames/s, tick→receive p50/p99, server CPU s per million frames (utime+stime
# over the whole swarm call) and RSS per fan. Same start as bench/peers/run_ws_node.sh's Flevum
# half. Env: FLEVUM_BIN (target/release/flevum), FANS (5000), PROCS (2), RIDERS (200),
# DURATION (30), TICK_MS (1000), PERF (set: `perf record` the server for PERF_S s from PERF_DELAY s;
# PERF_CALLGRAPH fp|dwarf, PERF_FREQ).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=${FLEVUM_BIN:-$ROOT/target/release/flevum}
LOAD=$ROOT/target/release/flevum-load
FANS=${FANS:-5000} PROCS=${PROCS:-2} RIDERS=${RIDERS:-200} DURATION=${DURATION:-30}
TICK_MS=${TICK_MS:-1000}
OUT=${OUT:-$ROOT/target/fanout}
COURSE=${COURSE:-$ROOT/../shared/data/real/course_ragbrai_day4_gravel_128km.gpx}
[ -f "$COURSE" ] || COURSE=/work/shared/data/real/course_ragbrai_day4_gravel_128km.gpx
mkdir -p "$OUT"
export FLEVUM_ADMIN_TOKEN=${FLEVUM_ADMIN_TOKEN:-load-test-admin-token-0123456789}
SERVER_PID= JOURNAL=
cleanup() {
    [ -n "$SERVER_PID" ] && { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
    [ -n "$JOURNAL" ] && rm -rf "$JOURNAL"
    return 0
}
trap cleanup EXIT
JOURNAL=$(mktemp -d /tmp/flevum-fanout-journal.XXXXXX)
LOG=$OUT/server.log
sed "s/^tick_ms = .*/tick_ms = $TICK_MS/" load-tests/server.toml >"$JOURNAL/server.toml"
FLEVUM_JOURNAL_DIR=$JOURNAL/journal "$BIN" serve --config "$JOURNAL/server.toml" >"$LOG" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do
    grep -q "certificate sha256" "$LOG" 2>/dev/null && curl -sf http://127.0.0.1:8080/readyz >/dev/null && break
    sleep 0.1
done
cpu() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "${PERF:-}" ]; then
    (sleep "${PERF_DELAY:-12}"; perf record --call-graph "${PERF_CALLGRAPH:-fp}" -F "${PERF_FREQ:-499}" -p "$SERVER_PID" -o "$OUT/perf.data" -- sleep "${PERF_S:-10}" >/dev/null 2>&1) &
    PERF_PID=$!
fi
c0=$(cpu)
"$LOAD" fans --server-log "$LOG" --course "$COURSE" --race fanout --fans "$FANS" --procs "$PROCS" \
    --drive-riders "$RIDERS" --duration-s "$DURATION" --connect-rate 1500 \
    --server-pid "$SERVER_PID" --out "$OUT/fans.json" >"$OUT/fans.txt"
c1=$(cpu)
[ -n "${PERF:-}" ] && wait "$PERF_PID"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$OUT/fans.json" "$(getconf CLK_TCK)" "$c0" "$c1" <<'PY'
import json, sys
rep = json.load(open(sys.argv[1])); hz = float(sys.argv[2])
cpu = (float(sys.argv[4]) - float(sys.argv[3])) / hz
r, l = rep["results"], rep["latency_ms"]["tick_to_receive"]
frames = r["frames_per_s"] * r["window_s"]
print(f"fans {r['fans_connected']} frames/s {r['frames_per_s']:.0f} bytes/frame {r['bytes_per_s']/max(r['frames_per_s'],1):.0f} "
      f"p50 {l['p50']} p99 {l['p99']} ms resyncs {r['resyncs']} 4008 {r['byte_budget_closes']} "
      f"cpu {cpu:.1f} s -> {cpu/max(frames,1)*1e6:.1f} s/M frames, rss/fan {r.get('server_rss_per_connection_kib')} KiB")
PY
