// REST access to the gateway (`/v1/...`): config, race list, race detail, alerts history. Passes
// a private race's viewer token (`?viewer=` of the page URL) along. No caching, no retries.

import type { Alert, RaceDetail, RaceSummary, ServerConfig } from './types';

/** The viewer token from the page URL, if any (private races). */
export function viewerToken(): string | null {
  return new URLSearchParams(location.search).get('viewer');
}

/** Appends `viewer=` to a URL when the page has one. */
export function withViewer(url: string): string {
  const token = viewerToken();
  if (!token) return url;
  return url + (url.includes('?') ? '&' : '?') + 'viewer=' + encodeURIComponent(token);
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(withViewer(url), { headers: { Accept: 'application/json' } });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return (await res.json()) as T;
}

export async function fetchConfig(): Promise<ServerConfig> {
  try {
    return await getJson<ServerConfig>('/v1/config');
  } catch {
    return { tileUrl: null, tileAttribution: null };
  }
}

export function fetchRaces(): Promise<RaceSummary[]> {
  return getJson<RaceSummary[]>('/v1/races');
}

export function fetchRace(race: string): Promise<RaceDetail> {
  return getJson<RaceDetail>(`/v1/races/${encodeURIComponent(race)}`);
}

export function fetchAlertsSince(race: string, since: number): Promise<Alert[]> {
  return getJson<Alert[]>(`/v1/races/${encodeURIComponent(race)}/alerts?since=${since}`);
}

/** `ws://` or `wss://` URL for a path on this origin. */
export function wsUrl(path: string): string {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}${path}`;
}
