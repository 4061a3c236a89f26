#!/usr/bin/env python3
"""Peer half of the matcher side-by-side: matches the same fixes as Flevum with PostGIS.

The course is stored as one row per segment (start distance, length, LineString) with a GiST
index; each fix is matched to its nearest segment by the index's KNN operator
(`ORDER BY geom <-> fix LIMIT 1`) and `ST_LineLocatePoint` gives the fraction along that
segment, so distance along the course = segment start + fraction × length. Same "nearest segment +
project" matcher as shapely_match.py (no transition model: wrong leg on shared roads).

Two ways, both timed as median of runs: one set-based query over the whole fix table
(`CROSS JOIN LATERAL`), and one prepared query per fix from this client over loopback TCP (what a
matcher service calling the database would do). Reads OUT_DIR/course.csv and OUT_DIR/fixes.csv
from the `matcher_side_by_side` example (Flevum's local metric frame, SRID 0, no projection).

Usage: postgis_match.py OUT_DIR PORT
"""
import csv
import io
import statistics
import sys
import time

import psycopg

out_dir = sys.argv[1] if len(sys.argv) > 1 else "target/side_by_side"
port = int(sys.argv[2]) if len(sys.argv) > 2 else 25432

with open(f"{out_dir}/course.csv") as f:
    course = [(float(r["x"]), float(r["y"]), float(r["distance_m"])) for r in csv.DictReader(f)]
with open(f"{out_dir}/fixes.csv") as f:
    rows = list(csv.DictReader(f))
fixes = [(float(r["x"]), float(r["y"]), float(r["flevum_distance_m"])) for r in rows]
truth = [float(r["true_distance_m"]) for r in rows]
n = len(fixes)

conn = psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True)
cur = conn.cursor()
cur.execute("CREATE EXTENSION IF NOT EXISTS postgis")
postgis_version = cur.execute("SELECT postgis_lib_version()").fetchone()[0]
pg_version = cur.execute("SHOW server_version").fetchone()[0]
cur.execute("DROP TABLE IF EXISTS seg; DROP TABLE IF EXISTS fix")
cur.execute("CREATE TABLE seg (id int PRIMARY KEY, d0 float8 NOT NULL, len float8 NOT NULL, geom geometry(LineString) NOT NULL)")
cur.execute("CREATE TABLE fix (id int PRIMARY KEY, geom geometry(Point) NOT NULL)")
buf = io.StringIO()
for i, ((x0, y0, d0), (x1, y1, d1)) in enumerate(zip(course, course[1:])):
    buf.write(f"{i}\t{d0}\t{d1 - d0}\tLINESTRING({x0!r} {y0!r},{x1!r} {y1!r})\n")
with cur.copy("COPY seg (id, d0, len, geom) FROM STDIN") as cp:
    cp.write(buf.getvalue())
buf = io.StringIO()
for i, (x, y, _) in enumerate(fixes):
    buf.write(f"{i}\tPOINT({x!r} {y!r})\n")
with cur.copy("COPY fix (id, geom) FROM STDIN") as cp:
    cp.write(buf.getvalue())
t = time.perf_counter()
cur.execute("CREATE INDEX seg_geom ON seg USING gist (geom)")
index_s = time.perf_counter() - t
cur.execute("ANALYZE seg; ANALYZE fix")
segments = len(course) - 1

SET_QUERY = """
SELECT f.id, s.d0 + ST_LineLocatePoint(s.geom, f.geom) * s.len
FROM fix f CROSS JOIN LATERAL (
    SELECT d0, len, geom FROM seg ORDER BY seg.geom <-> f.geom LIMIT 1
) s
"""
plan = "\n".join(r[0] for r in cur.execute("EXPLAIN " + SET_QUERY).fetchall())
assert "seg_geom" in plan, f"KNN query does not use the GiST index:\n{plan}"

set_rates, result = [], None
for _ in range(5):
    t = time.perf_counter()
    rows = cur.execute(SET_QUERY).fetchall()
    set_rates.append(n / (time.perf_counter() - t))
    result = dict(rows)
set_rate = statistics.median(set_rates)

# Per-fix prepared statement (psycopg prepares server-side with prepare=True).
ONE_QUERY = """
SELECT s.d0 + ST_LineLocatePoint(s.geom, p) * s.len
FROM (SELECT ST_SetSRID(ST_MakePoint(%s, %s), 0) AS p) q CROSS JOIN LATERAL (
    SELECT d0, len, geom FROM seg ORDER BY seg.geom <-> q.p LIMIT 1
) s
"""
one_rates, one_result = [], None
for _ in range(3):
    out = []
    t = time.perf_counter()
    for x, y, _ in fixes:
        out.append(cur.execute(ONE_QUERY, (x, y), prepare=True).fetchone()[0])
    one_rates.append(n / (time.perf_counter() - t))
    one_result = out
one_rate = statistics.median(one_rates)

flevum = [d for _, _, d in fixes]
pg = [result[i] for i in range(n)]
def share(limit, a, b):
    return 100.0 * sum(abs(x - y) <= limit for x, y in zip(a, b)) / len(a)
same = max(abs(a - b) for a, b in zip(pg, one_result))
print(f"postgis {postgis_version} on PostgreSQL {pg_version}: {n} fixes, {segments} course segments, GiST index built in {index_s * 1000:.0f} ms")
print(f"postgis set-based (CROSS JOIN LATERAL … ORDER BY geom <-> fix LIMIT 1, ST_LineLocatePoint): median {set_rate:.0f} fixes/s (5 runs, index prebuilt)")
print(f"postgis per-fix prepared query from a client over loopback TCP: median {one_rate:.0f} fixes/s (3 runs, one connection)")
def med(a, b):
    return statistics.median(abs(x - y) for x, y in zip(a, b))
print(f"postgis vs flevum: within 5 m on {share(5.0, pg, flevum):.2f} %, 10 m {share(10.0, pg, flevum):.2f} %, 20 m {share(20.0, pg, flevum):.2f} % of fixes "
      f"(median |diff| {med(pg, flevum):.2f} m); set-based vs per-fix max |diff| {same:.6f} m")
print(f"vs true distance (10 m per-axis noise): postgis median |err| {med(pg, truth):.2f} m, within 20 m {share(20.0, pg, truth):.2f} %; "
      f"flevum median |err| {med(flevum, truth):.2f} m, within 20 m {share(20.0, flevum, truth):.2f} %")
try:  # Same algorithm in shapely (bench/peers/shapely_match.py): the two should agree to ~0 m.
    import numpy as np
    import shapely
    xy = np.array([(x, y) for x, y, _ in course])
    segs = shapely.linestrings(np.stack([xy[:-1], xy[1:]], axis=1))
    pts = shapely.points(np.array([(x, y) for x, y, _ in fixes]))
    _, idx = shapely.STRtree(segs).query_nearest(pts, return_distance=False, all_matches=False)
    shp = np.array([d for _, _, d in course])[idx] + shapely.line_locate_point(segs[idx], pts)
    print(f"postgis vs shapely (same nearest segment + project): within 0.01 m on {share(0.01, pg, shp):.2f} %, within 1 m on {share(1.0, pg, shp):.2f} % of fixes")
except ImportError:
    pass
print(f"POSTGIS_SET_FIXES_PER_S={set_rate:.0f}")
print(f"POSTGIS_ONE_FIXES_PER_S={one_rate:.0f}")
