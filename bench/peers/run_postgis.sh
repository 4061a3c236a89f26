#!/usr/bin/env bash
# Side-by-side course matching: Flevum vs PostGIS (GiST KNN `<->` + ST_LineLocatePoint) vs shapely,
# same fixes (Tahoe 169 km course, 8 synthetic riders, 10 m noise, as bench/benches/matcher.rs),
# one run. Installs PostgreSQL 15 + PostGIS 3 from Debian if missing, psycopg and shapely from PyPI
# into bench/peers/.venv (git-ignored), starts a throwaway cluster on 127.0.0.1:$PGPORT in a temp
# dir (as the postgres user when run as root), and removes it at the end.
# Needs ../shared/data/real. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$PWD/target/side_by_side
PGPORT=${PGPORT:-25432}  # below the ephemeral port range (32768+), where loopback clients may sit

initdb=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$initdb" ] || ! ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql-15-postgis-3
    initdb=$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)
fi
pgbin=$(dirname "$initdb")
python3 -c 'import ensurepip' 2>/dev/null || { apt-get update -q && apt-get install -y -q python3-venv; }
python3 -m venv bench/peers/.venv
bench/peers/.venv/bin/pip install --quiet 'shapely>=2,<3' numpy 'psycopg[binary]==3.3.9'

PGDATA=$(mktemp -d /tmp/flevum-peers-pg.XXXXXX)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$PGDATA"
cleanup() {
    as_pg "$pgbin/pg_ctl" -D "$PGDATA/db" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$PGDATA"
}
trap cleanup EXIT
as_pg "$initdb" -D "$PGDATA/db" -U postgres -A trust >/dev/null
# Durability off (the tables are rebuilt every run); one query at a time, so no parallel workers.
as_pg "$pgbin/pg_ctl" -D "$PGDATA/db" -l "$PGDATA/log" -w start -o \
    "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGDATA -c fsync=off -c synchronous_commit=off -c shared_buffers=256MB -c max_parallel_workers_per_gather=0" >/dev/null ||
    { cat "$PGDATA/log" >&2; exit 1; }

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
flevum=$(cargo run --release -q -p flevum-bench --example matcher_side_by_side -- "$out")
echo "$flevum" | grep -v '^FLEVUM_'
shp=$(bench/peers/.venv/bin/python bench/peers/shapely_match.py "$out")
echo "$shp" | grep -v '^SHAPELY_'
pg=$(bench/peers/.venv/bin/python bench/peers/postgis_match.py "$out" "$PGPORT")
echo "$pg" | grep -v '^POSTGIS_'
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
f=$(echo "$flevum" | sed -n 's/^FLEVUM_FIXES_PER_S=//p')
s=$(echo "$shp" | sed -n 's/^SHAPELY_FIXES_PER_S=//p')
ps=$(echo "$pg" | sed -n 's/^POSTGIS_SET_FIXES_PER_S=//p')
p1=$(echo "$pg" | sed -n 's/^POSTGIS_ONE_FIXES_PER_S=//p')
python3 -c "
print(f'{\"fixes/s\":>42}')
for name, v in [('flevum matcher (one core)', $f), ('shapely STRtree + project (vectorised)', $s), ('postgis set-based KNN + ST_LineLocatePoint', $ps), ('postgis per-fix prepared query', $p1)]:
    print(f'{name:44}{v:>12,.0f}')
print(f'ratio flevum/postgis set-based: {$f/$ps:.1f}x, flevum/postgis per-fix: {$f/$p1:.1f}x, flevum/shapely: {$f/$s:.1f}x (same fixes, one run)')"
