// Formatting helpers shared by every view: time gaps (`+1:23`), race clock, distances, speeds,
// statuses and group names. Pure functions, no DOM.

import type { GroupKind, RiderStatus } from './types';

/** `+m:ss`, or `+h:mm:ss` from one hour; empty for an unknown gap, `0:00` for the leader. */
export function formatGap(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '';
  if (ms <= 0) return '0:00';
  return '+' + formatClock(ms);
}

/** `m:ss` or `h:mm:ss`. */
export function formatClock(ms: number): string {
  const total = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const ss = String(s).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

export function formatKm(metres: number): string {
  return `${(metres / 1000).toFixed(1)} km`;
}

export function formatSpeed(kmh: number): string {
  return `${kmh.toFixed(1)} km/h`;
}

const STATUS_LABELS: Record<RiderStatus, string> = {
  not_started: 'Not started',
  racing: 'Racing',
  stopped: 'Stopped',
  off_course: 'Off course',
  signal_lost: 'Signal lost',
  finished: 'Finished',
  abandoned: 'Abandoned',
};

export function formatStatus(status: RiderStatus): string {
  return STATUS_LABELS[status] ?? status;
}

const GROUP_LABELS: Record<GroupKind, string> = {
  breakaway: 'Breakaway',
  peloton: 'Peloton',
  chasers: 'Chasers',
  stragglers: 'Stragglers',
};

export function formatGroupKind(kind: GroupKind): string {
  return GROUP_LABELS[kind] ?? kind;
}

/** Local wall-clock time `HH:MM:SS` of an epoch-ms instant. */
export function formatTimeOfDay(ms: number): string {
  const d = new Date(ms);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

export function humanize(snake: string): string {
  const s = snake.replace(/_/g, ' ');
  return s.charAt(0).toUpperCase() + s.slice(1);
}
