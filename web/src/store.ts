// In-memory race state fed by snapshot/delta/alert frames: current rider states and groups, the
// deduplicated alert list, the tick history for the replay slider (deltas + periodic keyframes)
// and group gap samples for trend arrows. Knows nothing about sockets or the DOM.

import type { Alert, Delta, GroupView, RiderInfo, RiderView, Snapshot } from './types';

const KEYFRAME_EVERY = 50;
const MAX_ALERTS = 500;
const GAP_SAMPLE_KEEP_MS = 120_000;

interface HistoryEntry {
  tick: number;
  timeMs: number;
  states: RiderView[];
  groups: GroupView[] | null;
  /** Full state copy every KEYFRAME_EVERY entries (and at index 0). */
  keyframe: { states: Map<number, RiderView>; groups: GroupView[] } | null;
}

export interface ViewState {
  timeMs: number;
  states: Map<number, RiderView>;
  groups: GroupView[];
}

export type ApplyResult = 'applied' | 'ignored' | 'gap';

export class RaceStore {
  raceId = '';
  raceName = '';
  epoch = -1;
  tick = -1;
  timeMs = 0;
  startMs = 0;
  snapshot: Snapshot | null = null;
  riders = new Map<number, RiderInfo>();
  states = new Map<number, RiderView>();
  groups: GroupView[] = [];
  alerts: Alert[] = [];
  private alertKeys = new Set<string>();
  private history: HistoryEntry[] = [];
  private gapSamples: { timeMs: number; gaps: Map<number, number | null> }[] = [];
  private listeners = new Set<(kind: 'state' | 'alerts' | 'reset') => void>();

  onChange(fn: (kind: 'state' | 'alerts' | 'reset') => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(kind: 'state' | 'alerts' | 'reset'): void {
    for (const fn of this.listeners) fn(kind);
  }

  /** `epoch:tick` for `?resume=`, or null before the first snapshot. */
  resumeToken(): string | null {
    return this.snapshot ? `${this.epoch}:${this.tick}` : null;
  }

  applySnapshot(s: Snapshot): void {
    const reset = s.epoch !== this.epoch || s.tick < this.tick || !this.snapshot;
    this.snapshot = s;
    this.raceId = s.raceId;
    this.raceName = s.raceName;
    this.startMs = s.startMs;
    this.riders = new Map(s.riders.map((r) => [r.riderId, r]));
    this.states = new Map(s.states.map((r) => [r.riderId, r]));
    this.groups = s.groups;
    if (reset) {
      this.history = [];
      this.gapSamples = [];
    }
    this.epoch = s.epoch;
    this.tick = s.tick;
    this.timeMs = s.timeMs;
    this.pushHistory({ tick: s.tick, timeMs: s.timeMs, states: s.states, groups: s.groups }, true);
    this.sampleGaps();
    this.addAlerts(s.recentAlerts, false);
    this.emit(reset ? 'reset' : 'state');
  }

  applyDelta(d: Delta): ApplyResult {
    if (!this.snapshot || d.epoch !== this.epoch) return 'gap';
    if (d.tick <= this.tick) return 'ignored';
    if (d.tick !== this.tick + 1) return 'gap';
    this.tick = d.tick;
    this.timeMs = d.timeMs;
    for (const s of d.states) this.states.set(s.riderId, s);
    if (d.groups) this.groups = d.groups;
    this.pushHistory({ tick: d.tick, timeMs: d.timeMs, states: d.states, groups: d.groups }, false);
    this.sampleGaps();
    this.emit('state');
    if (d.alerts.length) this.addAlerts(d.alerts, true);
    return 'applied';
  }

  /** Adds alerts (deduplicated by epoch:seq), keeping them ordered by time. */
  addAlerts(alerts: Alert[], notify = true): void {
    let added = false;
    for (const a of alerts) {
      const key = `${a.epoch}:${a.seq}`;
      if (this.alertKeys.has(key)) continue;
      this.alertKeys.add(key);
      this.alerts.push(a);
      added = true;
    }
    if (!added) return;
    this.alerts.sort((a, b) => a.timeMs - b.timeMs || a.seq - b.seq);
    while (this.alerts.length > MAX_ALERTS) {
      const old = this.alerts.shift();
      if (old) this.alertKeys.delete(`${old.epoch}:${old.seq}`);
    }
    if (notify) this.emit('alerts');
  }

  private pushHistory(e: Omit<HistoryEntry, 'keyframe'>, forceKey: boolean): void {
    const keyframe =
      forceKey || this.history.length % KEYFRAME_EVERY === 0
        ? { states: new Map(this.states), groups: this.groups }
        : null;
    this.history.push({ ...e, keyframe });
  }

  private sampleGaps(): void {
    this.gapSamples.push({
      timeMs: this.timeMs,
      gaps: new Map(this.groups.map((g) => [g.groupId, g.gapToLeaderMs])),
    });
    while (this.gapSamples.length > 2 && this.gapSamples[0].timeMs < this.timeMs - GAP_SAMPLE_KEEP_MS) {
      this.gapSamples.shift();
    }
  }

  /** The group's gap to the leader about `agoMs` before the latest tick (undefined if unknown). */
  gapAgo(groupId: number, agoMs: number): number | null | undefined {
    const target = this.timeMs - agoMs;
    let best: { timeMs: number; gaps: Map<number, number | null> } | undefined;
    for (const s of this.gapSamples) {
      if (s.timeMs <= target) best = s;
      else break;
    }
    if (!best) return undefined;
    return best.gaps.get(groupId);
  }

  historyLength(): number {
    return this.history.length;
  }

  historyTime(index: number): number {
    return this.history[Math.max(0, Math.min(index, this.history.length - 1))]?.timeMs ?? this.timeMs;
  }

  /** Rider states and groups as they were after history entry `index`. */
  stateAt(index: number): ViewState {
    const last = this.history.length - 1;
    if (index >= last || last < 0) return { timeMs: this.timeMs, states: this.states, groups: this.groups };
    const i = Math.max(0, index);
    let k = i;
    while (k > 0 && !this.history[k].keyframe) k--;
    const key = this.history[k].keyframe;
    const states = new Map(key ? key.states : []);
    let groups = key ? key.groups : [];
    for (let j = k + 1; j <= i; j++) {
      const e = this.history[j];
      for (const s of e.states) states.set(s.riderId, s);
      if (e.groups) groups = e.groups;
    }
    return { timeMs: this.history[i].timeMs, states, groups };
  }

  riderLabel(id: number): string {
    const r = this.riders.get(id);
    return r ? `#${r.bib} ${r.name}` : `rider ${id}`;
  }
}
