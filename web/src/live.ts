// The fan WebSocket (`/v1/races/{race}/live`): connects, feeds frames into a RaceStore, resumes
// with `?resume=epoch:tick` after a drop, reconnects with jittered exponential back-off, resyncs
// (fresh snapshot) on a tick gap or close code 4008. Publishes its connection state; no DOM.

import { withViewer, wsUrl } from './api';
import type { RaceStore } from './store';
import type { FanFrame } from './types';

export type ConnState = 'connecting' | 'live' | 'reconnecting' | 'error';

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15_000;

export class LiveSocket {
  state: ConnState = 'connecting';
  detail = '';
  /** Wall-clock interval between deltas (EMA), for interpolation. */
  tickIntervalMs = 1000;
  private ws: WebSocket | null = null;
  private attempt = 0;
  private timer: number | undefined;
  private lastDeltaAt = 0;
  private resume = true;
  private stopped = false;
  private listeners = new Set<(s: ConnState) => void>();
  onTick: (() => void) | null = null;

  constructor(
    private readonly race: string,
    private readonly store: RaceStore,
  ) {}

  onState(fn: (s: ConnState) => void): void {
    this.listeners.add(fn);
    fn(this.state);
  }

  private setState(s: ConnState, detail = ''): void {
    this.state = s;
    this.detail = detail;
    for (const fn of this.listeners) fn(s);
  }

  start(): void {
    this.stopped = false;
    this.open();
  }

  stop(): void {
    this.stopped = true;
    window.clearTimeout(this.timer);
    this.ws?.close(1000);
    this.ws = null;
  }

  private open(): void {
    let path = `/v1/races/${encodeURIComponent(this.race)}/live`;
    const token = this.resume ? this.store.resumeToken() : null;
    if (token) path += `?resume=${token}`;
    this.resume = true;
    const ws = new WebSocket(wsUrl(withViewer(path)));
    this.ws = ws;
    this.setState(this.attempt === 0 && !this.store.snapshot ? 'connecting' : 'reconnecting');
    ws.onopen = () => {
      if (this.ws === ws) this.setState('live');
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') return; // binary encoding is never requested
      let frame: FanFrame;
      try {
        frame = JSON.parse(ev.data) as FanFrame;
      } catch {
        return;
      }
      this.handle(frame);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      if (ev.code === 4004) return this.setState('error', 'unknown race');
      if (ev.code === 4003) return this.setState('error', 'not allowed');
      if (ev.code === 4008) this.resume = false;
      this.schedule();
    };
  }

  private schedule(): void {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    const delay = base / 2 + Math.random() * (base / 2);
    this.attempt++;
    this.setState('reconnecting', `retry in ${Math.round(delay / 100) / 10} s`);
    this.timer = window.setTimeout(() => this.open(), delay);
  }

  /** Drops the connection and reconnects without resume (server sends a snapshot). */
  private resync(): void {
    this.resume = false;
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000);
    this.open();
  }

  private handle(frame: FanFrame): void {
    // Back-off resets only once the server really sends frames (not on a bare accept).
    this.attempt = 0;
    if (this.state !== 'live') this.setState('live');
    switch (frame.frame) {
      case 'snapshot':
        this.store.applySnapshot(frame);
        this.onTick?.();
        break;
      case 'delta': {
        const now = performance.now();
        if (this.lastDeltaAt) {
          const dt = Math.min(5000, Math.max(100, now - this.lastDeltaAt));
          this.tickIntervalMs = this.tickIntervalMs * 0.7 + dt * 0.3;
        }
        this.lastDeltaAt = now;
        const r = this.store.applyDelta(frame);
        if (r === 'gap') this.resync();
        else if (r === 'applied') this.onTick?.();
        break;
      }
      case 'alert': {
        const { frame: _f, ...alert } = frame;
        void _f;
        this.store.addAlerts([alert]);
        break;
      }
    }
  }
}

/** Renders a connection state badge (`data-testid="connection-state"`). */
export function connectionBadge(sock: LiveSocket): HTMLElement {
  const el = document.createElement('span');
  el.className = 'conn';
  el.setAttribute('data-testid', 'connection-state');
  el.setAttribute('role', 'status');
  el.setAttribute('aria-live', 'polite');
  const labels: Record<ConnState, string> = {
    connecting: 'Connecting…',
    live: 'Live',
    reconnecting: 'Reconnecting…',
    error: 'Disconnected',
  };
  sock.onState((s) => {
    el.dataset.state = s;
    el.textContent = labels[s] + (sock.detail ? ` (${sock.detail})` : '');
  });
  return el;
}
