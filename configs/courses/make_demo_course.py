#!/usr/bin/env python3
"""Generates configs/courses/flevum_demo.gpx: the demo race's course, made by the project itself.

A fictional 22 km point-to-point road race drawn from hand-chosen waypoints around Lelystad
(Flevoland, NL), densified every ~25 m, with a made-up elevation profile: flat polder roads, one
short dyke climb and a finishing rise. It is not a real route and needs no external data.
Run: python3 configs/courses/make_demo_course.py > configs/courses/flevum_demo.gpx
"""
import math

# Hand-chosen waypoints (lat, lon): start in the north-west, a dyke road, a loop round a polder
# block, and a finish in the south-east.
WAYPOINTS = [
    (52.5200, 5.4300), (52.5230, 5.4550), (52.5215, 5.4800), (52.5150, 5.5000),
    (52.5050, 5.5080), (52.4950, 5.5050), (52.4870, 5.5200), (52.4800, 5.5450),
    (52.4760, 5.5700), (52.4680, 5.5850), (52.4560, 5.5880), (52.4450, 5.5800),
    (52.4380, 5.5950), (52.4330, 5.6200), (52.4300, 5.6450), (52.4230, 5.6600),
]
CHECKPOINTS = [("Dyke sprint", 52.4950, 5.5050), ("Feed zone", 52.4560, 5.5880)]
R = 6371008.8


def haversine(a, b):
    la1, lo1, la2, lo2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * R * math.asin(math.sqrt(h))


def elevation(d_km):
    """Flat at -3 m (below sea level), a 12 m dyke climb at km 9-11, a 6 m rise to the finish."""
    e = -3.0
    if 9.0 <= d_km <= 11.0:
        e += 12.0 * math.sin(math.pi * (d_km - 9.0) / 2.0)
    if d_km > 19.5:
        e += 6.0 * min(1.0, (d_km - 19.5) / 3.0)
    return e


points = []
dist = 0.0
for a, b in zip(WAYPOINTS, WAYPOINTS[1:]):
    seg = haversine(a, b)
    n = max(1, int(seg / 25.0))
    for i in range(n):
        t = i / n
        p = (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)
        if points:
            dist += haversine(points[-1][:2], p)
        points.append((p[0], p[1], elevation(dist / 1000.0)))
last = WAYPOINTS[-1]
dist += haversine(points[-1][:2], last)
points.append((last[0], last[1], elevation(dist / 1000.0)))

print('<?xml version="1.0" encoding="UTF-8"?>')
print('<gpx version="1.1" creator="flevum make_demo_course.py" xmlns="http://www.topografix.com/GPX/1/1">')
print('  <metadata><name>Flevum Demo Polder Classic</name></metadata>')
for name, lat, lon in CHECKPOINTS:
    print(f'  <wpt lat="{lat:.6f}" lon="{lon:.6f}"><name>{name}</name></wpt>')
print('  <trk><name>Flevum Demo Polder Classic</name><trkseg>')
for lat, lon, ele in points:
    print(f'    <trkpt lat="{lat:.6f}" lon="{lon:.6f}"><ele>{ele:.1f}</ele></trkpt>')
print('  </trkseg></trk>')
print('</gpx>')
