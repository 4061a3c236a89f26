// Wire types of the Flevum fan surface: the JSON FanFrames of protocol/src/frames.rs (serde
// camelCase, `frame` tag; AlertKind tagged by `type`, snake_case, its own fields snake_case) and
// the REST bodies of CONTRACTS.md. Types only: no parsing or behaviour lives here.

export type RiderStatus =
  | 'not_started'
  | 'racing'
  | 'stopped'
  | 'off_course'
  | 'signal_lost'
  | 'finished'
  | 'abandoned';

export interface RiderInfo {
  riderId: number;
  bib: string;
  name: string;
  team: string;
}

export interface RiderView {
  riderId: number;
  lat: number;
  lon: number;
  distanceM: number;
  speedKmh: number;
  rank: number;
  gapToLeaderMs: number | null;
  gapToAheadMs: number | null;
  groupId: number | null;
  status: RiderStatus;
  lastFixMs: number;
  etaFinishMs: number | null;
  batteryPct: number | null;
}

export type GroupKind = 'breakaway' | 'peloton' | 'chasers' | 'stragglers';

export interface GroupView {
  groupId: number;
  kind: GroupKind;
  riders: number[];
  headDistanceM: number;
  gapToAheadMs: number | null;
  gapToLeaderMs: number | null;
}

export interface CheckpointInfo {
  name: string;
  distanceM: number;
  lat: number;
  lon: number;
}

export interface CourseSummary {
  name: string;
  lengthM: number;
  ascentM: number;
  /** `[lon, lat]` pairs (GeoJSON order). */
  line: [number, number][];
  checkpoints: CheckpointInfo[];
}

export type Severity = 'info' | 'notable' | 'critical';

export const ALERT_TYPES = [
  'race_started',
  'breakaway_formed',
  'breakaway_caught',
  'group_split',
  'gap_changed',
  'leader_changed',
  'rider_stopped',
  'possible_crash',
  'dropped_from_group',
  'off_course',
  'back_on_course',
  'signal_lost',
  'signal_regained',
  'low_battery',
  'checkpoint_leader',
  'finisher',
  'sos',
  'rider_abandoned',
  'rider_reinstated',
] as const;
export type AlertType = (typeof ALERT_TYPES)[number];

/** The alert's kind: `type` plus kind-specific fields (group_id, gap_ms, …). */
export interface AlertKind {
  type: AlertType;
  [field: string]: unknown;
}

export interface Alert {
  seq: number;
  epoch: number;
  timeMs: number;
  raceTimeMs: number;
  courseKm: number;
  riders: number[];
  severity: Severity;
  kind: AlertKind;
}

export interface Snapshot {
  frame: 'snapshot';
  raceId: string;
  raceName: string;
  epoch: number;
  tick: number;
  timeMs: number;
  startMs: number;
  course: CourseSummary;
  riders: RiderInfo[];
  states: RiderView[];
  groups: GroupView[];
  recentAlerts: Alert[];
}

export interface Delta {
  frame: 'delta';
  raceId: string;
  epoch: number;
  tick: number;
  timeMs: number;
  states: RiderView[];
  groups: GroupView[] | null;
  alerts: Alert[];
}

export type AlertFrame = { frame: 'alert' } & Alert;
export type FanFrame = Snapshot | Delta | AlertFrame;

export interface ServerConfig {
  tileUrl: string | null;
  tileAttribution: string | null;
}

export type RaceStatus = 'scheduled' | 'live' | 'finished';

export interface RaceSummary {
  id: string;
  name: string;
  sport: string;
  startMs: number;
  visibility: 'public' | 'private';
  status: RaceStatus;
  riders: number;
}

export interface RaceDetail {
  id: string;
  name: string;
  sport: string;
  startMs: number;
  status: RaceStatus;
  course: { type: 'Feature'; geometry: { type: 'LineString'; coordinates: number[][] } } | null;
  lengthM: number;
  ascentM: number;
  elevation: [number, number][];
  checkpoints: CheckpointInfo[];
  riders: RiderInfo[];
}
