// Elevation profile: an SVG area of `[distanceM, eleM]` points (stretched to the panel width)
// with checkpoints and the riders drawn on it as HTML dots positioned in percent, so the dots
// stay round at any size. The followed rider is drawn on top and larger.

import { riderColor } from './colors';
import { clear, h, svg } from './dom';
import type { CheckpointInfo, RiderInfo, RiderView } from './types';

const W = 1000;
const H = 200;

export class ElevationProfile {
  readonly el: HTMLElement;
  private plot: HTMLDivElement;
  private dotsLayer: HTMLDivElement;
  private points: [number, number][] = [];
  private maxD = 1;
  private minE = 0;
  private maxE = 1;
  private dots = new Map<number, HTMLElement>();
  private followed: number | null = null;
  onRider: ((riderId: number) => void) | null = null;

  constructor() {
    this.plot = h('div', { class: 'elev-plot' });
    this.dotsLayer = h('div', { class: 'elev-dots', 'aria-hidden': 'true' });
    this.plot.append(this.dotsLayer);
    this.el = h('section', { class: 'panel elevation', 'aria-label': 'Elevation profile' }, h('h2', { text: 'Elevation' }), this.plot);
  }

  setProfile(points: [number, number][], lengthM: number, checkpoints: CheckpointInfo[]): void {
    this.points = points.filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]));
    if (this.points.length < 2) {
      this.plot.prepend(h('p', { class: 'muted', text: 'No elevation data' }));
      return;
    }
    this.maxD = Math.max(lengthM, this.points[this.points.length - 1][0], 1);
    const eles = this.points.map((p) => p[1]);
    const lo = Math.min(...eles);
    const hi = Math.max(...eles);
    const pad = Math.max(10, (hi - lo) * 0.1);
    this.minE = lo - pad;
    this.maxE = hi + pad;
    const s = svg('svg', {
      viewBox: `0 0 ${W} ${H}`,
      preserveAspectRatio: 'none',
      role: 'img',
      'aria-label': `Elevation from ${Math.round(lo)} m to ${Math.round(hi)} m over ${(this.maxD / 1000).toFixed(1)} km`,
    });
    const pts = this.points.map((p) => `${this.x(p[0]).toFixed(1)},${this.y(p[1]).toFixed(1)}`);
    s.append(svg('path', { d: `M0,${H} L${pts.join(' L')} L${W},${H} Z`, class: 'elev-area' }));
    s.append(svg('path', { d: `M${pts.join(' L')}`, class: 'elev-line', 'vector-effect': 'non-scaling-stroke' }));
    for (const cp of checkpoints) {
      const x = this.x(cp.distanceM);
      s.append(svg('line', { x1: x, x2: x, y1: 0, y2: H, class: 'elev-cp', 'vector-effect': 'non-scaling-stroke' }));
    }
    const old = this.plot.querySelector('svg');
    if (old) old.remove();
    this.plot.prepend(s);
    const labels = h('div', { class: 'elev-labels', 'aria-hidden': 'true' });
    labels.append(
      h('span', { text: `${Math.round(hi)} m` }),
      h('span', { text: `${Math.round(lo)} m` }),
      h('span', { text: `${(this.maxD / 1000).toFixed(0)} km` }),
    );
    this.plot.append(labels);
  }

  private x(d: number): number {
    return (Math.max(0, Math.min(d, this.maxD)) / this.maxD) * W;
  }

  private y(e: number): number {
    return H - ((e - this.minE) / (this.maxE - this.minE)) * H;
  }

  /** Elevation at a distance, linear between profile points. */
  private eleAt(d: number): number {
    const p = this.points;
    if (!p.length) return 0;
    let lo = 0;
    let hi = p.length - 1;
    if (d <= p[0][0]) return p[0][1];
    if (d >= p[hi][0]) return p[hi][1];
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (p[mid][0] <= d) lo = mid;
      else hi = mid;
    }
    const t = (d - p[lo][0]) / (p[hi][0] - p[lo][0] || 1);
    return p[lo][1] + (p[hi][1] - p[lo][1]) * t;
  }

  update(states: Map<number, RiderView>, riders: Map<number, RiderInfo>, colors: Map<number, string>): void {
    if (this.points.length < 2) return;
    for (const s of states.values()) {
      let dot = this.dots.get(s.riderId);
      if (!dot) {
        const bib = riders.get(s.riderId)?.bib ?? String(s.riderId);
        dot = h('span', { class: 'elev-dot', title: `#${bib}` });
        this.dotsLayer.append(dot);
        this.dots.set(s.riderId, dot);
      }
      const left = (this.x(s.distanceM) / W) * 100;
      const top = (this.y(this.eleAt(s.distanceM)) / H) * 100;
      dot.style.left = `${left.toFixed(2)}%`;
      dot.style.top = `${top.toFixed(2)}%`;
      dot.style.background = riderColor(colors, s.groupId);
      dot.classList.toggle('followed', s.riderId === this.followed);
    }
  }

  setFollowed(id: number | null): void {
    this.followed = id;
    for (const [rid, dot] of this.dots) dot.classList.toggle('followed', rid === id);
  }

  reset(): void {
    clear(this.dotsLayer);
    this.dots.clear();
  }
}
