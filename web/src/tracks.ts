// Replay source for a race that finished before the page opened (so no delta history was
// received): fetches every rider's track (`/v1/races/{race}/riders/{id}/track?format=geojson`)
// and resamples them onto a common time axis. Accepts a GeoJSON LineString Feature with
// per-point times in `properties` (timesMs | times | coordTimes) or a JSON array of TrackPoints.

import { withViewer } from './api';
import type { RiderView } from './types';
import type { ViewState } from './store';

interface Track {
  t: number[];
  lat: number[];
  lon: number[];
  d: number[];
}

const STEPS = 400;

function toMs(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string') return Date.parse(v);
  return NaN;
}

function haversine(lat1: number, lon1: number, lat2: number, lon2: number): number {
  const r = Math.PI / 180;
  const a = Math.sin(((lat2 - lat1) * r) / 2) ** 2 + Math.cos(lat1 * r) * Math.cos(lat2 * r) * Math.sin(((lon2 - lon1) * r) / 2) ** 2;
  return 2 * 6371000 * Math.asin(Math.sqrt(a));
}

/** Parses either track format; null when it has no usable timed points. */
export function parseTrack(body: unknown): Track | null {
  const tr: Track = { t: [], lat: [], lon: [], d: [] };
  if (Array.isArray(body)) {
    for (const p of body as Record<string, unknown>[]) {
      tr.t.push(toMs(p.timeMs ?? p.time_ms));
      tr.lat.push(Number(p.lat));
      tr.lon.push(Number(p.lon));
      tr.d.push(Number(p.distanceM ?? p.distance_m ?? NaN));
    }
  } else if (body && typeof body === 'object') {
    const f = body as { geometry?: { coordinates?: number[][] }; properties?: Record<string, unknown> };
    const coords = f.geometry?.coordinates ?? [];
    const props = f.properties ?? {};
    const times = (props.timesMs ?? props.times ?? props.coordTimes ?? []) as unknown[];
    const dists = (props.distancesM ?? props.distances ?? []) as unknown[];
    coords.forEach((c, i) => {
      tr.lon.push(c[0]);
      tr.lat.push(c[1]);
      tr.t.push(toMs(times[i]));
      tr.d.push(Number(dists[i] ?? NaN));
    });
  }
  if (tr.t.length < 2 || tr.t.some((x) => !Number.isFinite(x))) return null;
  if (tr.d.some((x) => !Number.isFinite(x))) {
    tr.d[0] = 0;
    for (let i = 1; i < tr.t.length; i++) tr.d[i] = tr.d[i - 1] + haversine(tr.lat[i - 1], tr.lon[i - 1], tr.lat[i], tr.lon[i]);
  }
  return tr;
}

function sample(tr: Track, t: number): { lat: number; lon: number; d: number } {
  const n = tr.t.length;
  if (t <= tr.t[0]) return { lat: tr.lat[0], lon: tr.lon[0], d: tr.d[0] };
  if (t >= tr.t[n - 1]) return { lat: tr.lat[n - 1], lon: tr.lon[n - 1], d: tr.d[n - 1] };
  let lo = 0;
  let hi = n - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (tr.t[mid] <= t) lo = mid;
    else hi = mid;
  }
  const f = (t - tr.t[lo]) / (tr.t[hi] - tr.t[lo] || 1);
  return {
    lat: tr.lat[lo] + (tr.lat[hi] - tr.lat[lo]) * f,
    lon: tr.lon[lo] + (tr.lon[hi] - tr.lon[lo]) * f,
    d: tr.d[lo] + (tr.d[hi] - tr.d[lo]) * f,
  };
}

export class TrackReplay {
  private constructor(
    private readonly tracks: Map<number, Track>,
    private readonly finals: Map<number, RiderView>,
    private readonly t0: number,
    private readonly t1: number,
  ) {}

  /** Fetches all tracks; null if none could be used. */
  static async load(race: string, finals: Map<number, RiderView>): Promise<TrackReplay | null> {
    const ids = [...finals.keys()];
    const tracks = new Map<number, Track>();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < ids.length) {
        const id = ids[next++];
        try {
          const res = await fetch(withViewer(`/v1/races/${encodeURIComponent(race)}/riders/${id}/track?format=geojson`), {
            headers: { Accept: 'application/geo+json, application/json' },
          });
          if (!res.ok) continue;
          const tr = parseTrack(await res.json());
          if (tr) tracks.set(id, tr);
        } catch {
          /* a missing track leaves that rider at its final state */
        }
      }
    };
    await Promise.all(Array.from({ length: 6 }, worker));
    if (!tracks.size) return null;
    let t0 = Infinity;
    let t1 = -Infinity;
    for (const tr of tracks.values()) {
      t0 = Math.min(t0, tr.t[0]);
      t1 = Math.max(t1, tr.t[tr.t.length - 1]);
    }
    return t1 > t0 ? new TrackReplay(tracks, finals, t0, t1) : null;
  }

  length(): number {
    return STEPS + 1;
  }

  time(i: number): number {
    return this.t0 + ((this.t1 - this.t0) * i) / STEPS;
  }

  at(i: number): ViewState {
    const t = this.time(i);
    const states = new Map<number, RiderView>();
    for (const [id, fin] of this.finals) {
      const tr = this.tracks.get(id);
      if (!tr) {
        states.set(id, fin);
        continue;
      }
      const p = sample(tr, t);
      const done = t >= tr.t[tr.t.length - 1];
      states.set(id, { ...fin, lat: p.lat, lon: p.lon, distanceM: p.d, rank: 0, gapToLeaderMs: null, gapToAheadMs: null, groupId: null, status: done ? fin.status : 'racing' });
    }
    const order = [...states.values()].sort((a, b) => b.distanceM - a.distanceM);
    order.forEach((s, k) => states.set(s.riderId, { ...s, rank: k + 1 }));
    return { timeMs: t, states, groups: [] };
  }
}
