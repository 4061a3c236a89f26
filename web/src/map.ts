// The Leaflet race map: course line and checkpoints on a plain background (a tile layer only when
// the server configures one), one labelled dot per rider coloured by group, moved smoothly
// between ticks with requestAnimationFrame, the followed rider highlighted and kept in view.

import L from 'leaflet';
import 'leaflet/dist/leaflet.css';
import { riderColor } from './colors';
import type { CheckpointInfo, RiderInfo, RiderView, ServerConfig } from './types';

interface Dot {
  marker: L.Marker;
  el: HTMLElement;
  from: L.LatLng;
  to: L.LatLng;
  shown: L.LatLng;
}

export class RaceMap {
  readonly map: L.Map;
  private dots = new Map<number, Dot>();
  private animStart = 0;
  private animDuration = 1000;
  private raf = 0;
  private followed: number | null = null;
  private courseLayer: L.LayerGroup = L.layerGroup();
  private fitted = false;
  onRiderClick: ((riderId: number) => void) | null = null;

  constructor(el: HTMLElement, config: ServerConfig) {
    this.map = L.map(el, { zoomControl: true, attributionControl: true, preferCanvas: false });
    this.map.attributionControl.setPrefix(false);
    if (config.tileUrl) {
      L.tileLayer(config.tileUrl, { attribution: config.tileAttribution ?? '', maxZoom: 19 }).addTo(this.map);
    } else {
      el.classList.add('no-tiles');
    }
    this.courseLayer.addTo(this.map);
    this.map.setView([0, 0], 2);
  }

  /** Draws the course (`[lon, lat]` pairs) and checkpoints; fits the view the first time. */
  setCourse(line: [number, number][], checkpoints: CheckpointInfo[]): void {
    this.courseLayer.clearLayers();
    const latlngs = line.map(([lon, lat]) => L.latLng(lat, lon));
    if (latlngs.length < 2) return;
    L.polyline(latlngs, { color: '#ffffff', weight: 8, opacity: 0.9, interactive: false }).addTo(this.courseLayer);
    L.polyline(latlngs, { color: '#334155', weight: 4, opacity: 1, interactive: false }).addTo(this.courseLayer);
    L.circleMarker(latlngs[0], { radius: 6, color: '#166534', fillColor: '#22c55e', fillOpacity: 1, weight: 2 })
      .bindTooltip('Start')
      .addTo(this.courseLayer);
    for (const cp of checkpoints) {
      L.circleMarker([cp.lat, cp.lon], { radius: 5, color: '#0f172a', fillColor: '#facc15', fillOpacity: 1, weight: 2 })
        .bindTooltip(`${cp.name} (${(cp.distanceM / 1000).toFixed(1)} km)`)
        .addTo(this.courseLayer);
    }
    if (!this.fitted) {
      this.map.fitBounds(L.latLngBounds(latlngs), { padding: [20, 20] });
      this.fitted = true;
    }
  }

  /**
   * Sets new rider positions. With `animateMs` > 0 dots glide from where they are shown now to
   * the new position over that time; with 0 they jump (replay scrubbing).
   */
  update(states: Iterable<RiderView>, riders: Map<number, RiderInfo>, colors: Map<number, string>, animateMs: number): void {
    const seen = new Set<number>();
    for (const s of states) {
      if (s.lat === 0 && s.lon === 0) continue;
      seen.add(s.riderId);
      const target = L.latLng(s.lat, s.lon);
      let dot = this.dots.get(s.riderId);
      if (!dot) {
        dot = this.createDot(s.riderId, riders.get(s.riderId), target);
      }
      dot.from = animateMs > 0 ? dot.shown : target;
      dot.to = target;
      if (animateMs <= 0) {
        dot.shown = target;
        dot.marker.setLatLng(target);
      }
      const color = riderColor(colors, s.groupId);
      if (dot.el.style.getPropertyValue('--dot') !== color) dot.el.style.setProperty('--dot', color);
      dot.el.dataset.status = s.status;
    }
    for (const [id, dot] of this.dots) {
      if (!seen.has(id)) {
        dot.marker.remove();
        this.dots.delete(id);
      }
    }
    this.animStart = performance.now();
    this.animDuration = Math.max(1, animateMs);
    if (animateMs > 0 && !this.raf) this.raf = requestAnimationFrame((t) => this.frame(t));
    this.panToFollowed(animateMs > 0);
  }

  private createDot(id: number, info: RiderInfo | undefined, at: L.LatLng): Dot {
    const bib = info?.bib ?? String(id);
    const icon = L.divIcon({ className: 'rider-dot', html: '', iconSize: [26, 26], iconAnchor: [13, 13] });
    const marker = L.marker(at, { icon, keyboard: true, riseOnHover: true, title: '' }).addTo(this.map);
    const el = marker.getElement() as HTMLElement;
    el.textContent = bib;
    el.setAttribute('data-testid', 'rider-dot');
    el.setAttribute('data-rider-id', String(id));
    el.setAttribute('role', 'button');
    el.setAttribute('aria-label', `Follow bib ${bib}${info ? `, ${info.name}` : ''}`);
    el.setAttribute('data-followed', String(this.followed === id));
    marker.on('click', () => this.onRiderClick?.(id));
    const dot: Dot = { marker, el, from: at, to: at, shown: at };
    this.dots.set(id, dot);
    if (this.followed === id) this.applyFollowed(dot, true);
    return dot;
  }

  private frame(now: number): void {
    const t = Math.min(1, (now - this.animStart) / this.animDuration);
    const e = t; // linear: riders move at roughly constant speed between ticks
    for (const dot of this.dots.values()) {
      if (dot.shown.equals(dot.to)) continue;
      const lat = dot.from.lat + (dot.to.lat - dot.from.lat) * e;
      const lng = dot.from.lng + (dot.to.lng - dot.from.lng) * e;
      dot.shown = t >= 1 ? dot.to : L.latLng(lat, lng);
      dot.marker.setLatLng(dot.shown);
    }
    this.raf = t < 1 ? requestAnimationFrame((x) => this.frame(x)) : 0;
  }

  setFollowed(id: number | null): void {
    if (this.followed !== null) {
      const old = this.dots.get(this.followed);
      if (old) this.applyFollowed(old, false);
    }
    this.followed = id;
    const dot = id === null ? undefined : this.dots.get(id);
    if (dot) {
      this.applyFollowed(dot, true);
      this.map.panTo(dot.to, { animate: true });
    }
  }

  private applyFollowed(dot: Dot, on: boolean): void {
    dot.el.setAttribute('data-followed', String(on));
    dot.el.classList.toggle('followed', on);
    dot.marker.setZIndexOffset(on ? 10_000 : 0);
  }

  private panToFollowed(animate: boolean): void {
    if (this.followed === null) return;
    const dot = this.dots.get(this.followed);
    if (!dot) return;
    const inner = this.map.getBounds().pad(-0.25);
    if (!inner.contains(dot.to)) this.map.panTo(dot.to, { animate, duration: 0.5 });
  }

  invalidate(): void {
    this.map.invalidateSize();
  }

  destroy(): void {
    cancelAnimationFrame(this.raf);
    this.map.remove();
  }
}
