#!/usr/bin/env bash
# Side-by-side course matching: Flevum vs shapely (STRtree + LineString.project), same fixes, one run.
# Installs shapely from PyPI into bench/peers/.venv (git-ignored). Needs ../shared/data/real.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=target/side_by_side
python3 -m venv bench/peers/.venv
bench/peers/.venv/bin/pip install --quiet 'shapely>=2,<3' numpy
flevum=$(cargo run --release -q -p flevum-bench --example matcher_side_by_side -- "$out")
echo "$flevum" | grep -v '^FLEVUM_'
peer=$(bench/peers/.venv/bin/python bench/peers/shapely_match.py "$out")
echo "$peer" | grep -v '^SHAPELY_'
f=$(echo "$flevum" | sed -n 's/^FLEVUM_FIXES_PER_S=//p')
s=$(echo "$peer" | sed -n 's/^SHAPELY_FIXES_PER_S=//p')
python3 -c "print(f'ratio flevum/shapely: {$f/$s:.1f}x (same fixes, same machine, one run; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))')"
