#!/usr/bin/env python3
"""Peer half of the matcher side-by-side: matches the same fixes as Flevum with shapely.

For every fix, shapely's STRtree finds the nearest course segment (vectorised `query_nearest`) and
`line_locate_point` (LineString.project) gives the distance along that segment; distance along the
course is the segment's start distance plus that. This is the usual "nearest segment + project"
matcher, with no transition model, so it is faster per fix than a full matcher would be and it picks
the wrong leg on shared roads; it is the fastest fair peer for the geometric work.

Reads OUT_DIR/course.csv and OUT_DIR/fixes.csv written by the `matcher_side_by_side` example, in
Flevum's local metric frame (the peer does no projection). Prints fixes/s (median of 7 runs).
"""
import csv
import sys
import time

import numpy as np
import shapely

out_dir = sys.argv[1] if len(sys.argv) > 1 else "target/side_by_side"
with open(f"{out_dir}/course.csv") as f:
    rows = list(csv.DictReader(f))
xy = np.array([[float(r["x"]), float(r["y"])] for r in rows])
dist = np.array([float(r["distance_m"]) for r in rows])
segments = shapely.linestrings(np.stack([xy[:-1], xy[1:]], axis=1))
with open(f"{out_dir}/fixes.csv") as f:
    fixes = list(csv.DictReader(f))
pts = shapely.points(np.array([[float(r["x"]), float(r["y"])] for r in fixes]))
flevum = np.array([float(r["flevum_distance_m"]) for r in fixes])

rates = []
result = None
for _ in range(7):
    start = time.perf_counter()
    tree = shapely.STRtree(segments)
    _, seg_idx = tree.query_nearest(pts, return_distance=False, all_matches=False)
    along = shapely.line_locate_point(segments[seg_idx], pts)
    result = dist[seg_idx] + along
    rates.append(len(fixes) / (time.perf_counter() - start))
rates.sort()
median = rates[len(rates) // 2]
agree = np.mean(np.abs(result - flevum) <= 20.0) * 100.0
print(f"shapely {shapely.__version__}: {len(fixes)} fixes, median {float(median):.0f} fixes/s (7 runs, vectorised, tree build included)")
print(f"shapely and flevum agree within 20 m on {agree:.2f} % of fixes")
print(f"SHAPELY_FIXES_PER_S={float(median):.0f}")
