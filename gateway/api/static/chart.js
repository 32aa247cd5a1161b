// Trend charts over the history API, drawn by uPlot (vendored under /static/vendor/uplot, MIT).
// Several variables on one chart, one y axis per unit (the first two shown), gaps kept as gaps,
// drag to zoom and double-click to zoom out, and live samples appended as they arrive.
import { api, esc, fmt, naturalCompare } from "./lib.js";
import { bucketFor, toColumns } from "./series.js";

export const RANGES = [["15 min", 900], ["1 h", 3600], ["8 h", 8 * 3600], ["24 h", 86400]];
const COLOURS = ["#2b6cb0", "#dd6b20", "#2f855a", "#b83280", "#805ad5", "#c53030", "#2c7a7b", "#975a16"];
const GAP = 2;                  // uPlot.join: an explicit null is a gap, widened over alignment artefacts

export class Trend {
  constructor(el, { height = 280 } = {}) {
    this.el = el;
    this.height = height;
    this.plot = null;
    this.series = [];      // [{path, unit, xs, ys}]
    this.window = null;    // seconds kept when following now; null for a fixed range
    this.pending = false;
    this.resize = new ResizeObserver(() => this.plot && this.plot.setSize(this.size()));
    this.resize.observe(el);
    // uPlot's double-click zooms out to the data; zoom out to the whole range asked for instead.
    el.addEventListener("dblclick", () => setTimeout(() => this.plot && this.showRange()));
  }

  size() { return { width: Math.max(200, this.el.clientWidth), height: this.height }; }

  // range: {span} for the last span seconds (followed live), or {start, end} in epoch seconds.
  async load(equipment, paths, range) {
    const end = range.end || Date.now() / 1000;
    const start = range.start || end - range.span;
    this.window = range.span || null;
    const bucket = bucketFor(end - start);
    const q = new URLSearchParams({ start: String(start), end: String(end) });
    for (const p of paths) q.append("path", p);
    if (bucket) { q.set("bucket", bucket + "s"); q.set("agg", "avg"); }
    const t0 = performance.now();
    const r = await api(`/equipment/${encodeURIComponent(equipment)}/history?${q}`);
    if (!r.ok) throw new Error(r.body.detail);
    this.series = r.body.series.map((s) => {
      const [xs, ys] = toColumns(s.points, bucket);
      return { path: s.path, unit: s.unit.symbol || "", xs, ys, count: s.points.length };
    });
    this.bucket = bucket;
    this.range = [start, end];
    this.draw();
    this.loadedMs = performance.now() - t0;
    this.el.dataset.points = String(this.series.reduce((n, s) => n + s.count, 0));
    this.el.dataset.loadedMs = this.loadedMs.toFixed(0);
    return this.series;
  }

  draw() {
    if (this.plot) { this.plot.destroy(); this.plot = null; }
    this.el.innerHTML = "";
    if (!this.series.length) return;
    const units = [...new Set(this.series.map((s) => s.unit))];
    const scales = { x: { time: true } };
    units.forEach((u) => { scales[u || "·"] = { auto: true }; });
    const axes = [{}];
    units.forEach((u, i) => {
      axes.push({ scale: u || "·", side: i === 0 ? 3 : 1, label: u, show: i < 2, grid: { show: i === 0 },
                  size: 55, values: (_, ticks) => ticks.map(fmt) });
    });
    const opts = Object.assign(this.size(), {
      scales, axes,
      cursor: { drag: { x: true, y: false } },
      legend: { live: true },
      series: [{ label: "time" }].concat(this.series.map((s, i) => ({
        label: s.unit ? `${s.path} (${s.unit})` : s.path, scale: s.unit || "·", stroke: COLOURS[i % COLOURS.length],
        width: 1.5, spanGaps: false, value: (_, v) => (v === null || v === undefined ? "–" : fmt(v)),
      }))),
    });
    this.plot = new uPlot(opts, this.data(), this.el);
    this.showRange();
  }

  // The x axis spans the range asked for, not only the stretch that has data.
  showRange() {
    const [start, end] = this.window ? [Date.now() / 1000 - this.window, Date.now() / 1000] : this.range;
    this.plot.setScale("x", { min: start, max: end });
  }

  data() {
    const tables = this.series.map((s) => [s.xs, s.ys]);
    if (tables.length === 1) return tables[0];
    return uPlot.join(tables, tables.map(() => [null, GAP]));
  }

  // Live samples [{path, value, quality, source_ts}] extend the chart while it follows now.
  extend(samples) {
    if (!this.plot || !this.window) return;
    let changed = false;
    for (const s of samples) {
      const series = this.series.find((x) => x.path === s.path);
      if (!series || typeof s.value !== "number" || !s.source_ts) continue;
      const last = series.xs.length ? series.xs[series.xs.length - 1] : -Infinity;
      if (s.source_ts <= last) continue;
      series.xs.push(s.source_ts);
      series.ys.push(s.quality === "bad" ? null : s.value);
      changed = true;
    }
    if (!changed || this.pending) return;
    this.pending = true;
    setTimeout(() => {  // at most one redraw a second, whatever the sample rate
      this.pending = false;
      if (!this.plot) return;
      const cut = Date.now() / 1000 - this.window;
      for (const s of this.series) {
        let n = 0;
        while (n < s.xs.length && s.xs[n] < cut) n++;
        if (n) { s.xs.splice(0, n); s.ys.splice(0, n); }
      }
      // Follow now unless the user zoomed in (the view is then narrower than the window): keep that view.
      const zoomed = this.plot.scales.x.max - this.plot.scales.x.min < this.window * 0.98;
      this.plot.setData(this.data(), false);
      if (!zoomed) this.showRange();
      this.el.dataset.live = String(Number(this.el.dataset.live || 0) + 1);  // redraws from live samples
    }, 1000);
  }

  destroy() {
    this.resize.disconnect();
    if (this.plot) this.plot.destroy();
    this.plot = null;
  }
}

// The range picker: buttons for the fixed spans, and a custom start/end.
export function rangePicker(el, onChange, initial = 3600) {
  const local = (ts) => new Date(ts * 1000 - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  el.innerHTML = RANGES.map(([label, s]) => `<button type="button" data-span="${s}" class="${s === initial ? "on" : ""}">${esc(label)}</button>`).join("")
    + `<button type="button" data-custom>custom</button>
       <span data-customform hidden><input type="datetime-local" data-from> – <input type="datetime-local" data-to>
       <button type="button" data-apply>show</button></span>`;
  const buttons = [...el.querySelectorAll("button[data-span], button[data-custom]")];
  const mark = (b) => buttons.forEach((x) => x.classList.toggle("on", x === b));
  el.querySelectorAll("button[data-span]").forEach((b) => b.addEventListener("click", () => {
    mark(b); el.querySelector("[data-customform]").hidden = true; onChange({ span: Number(b.dataset.span) });
  }));
  el.querySelector("[data-custom]").addEventListener("click", (e) => {
    mark(e.currentTarget);
    const form = el.querySelector("[data-customform]");
    form.hidden = false;
    const now = Date.now() / 1000;
    el.querySelector("[data-from]").value ||= local(now - 3600);
    el.querySelector("[data-to]").value ||= local(now);
  });
  el.querySelector("[data-apply]").addEventListener("click", () => {
    const start = new Date(el.querySelector("[data-from]").value).getTime() / 1000;
    const end = new Date(el.querySelector("[data-to]").value).getTime() / 1000;
    if (!(start < end)) return;
    onChange({ start, end });
  });
  return { span: initial };
}

export function sortPaths(paths) { return [...paths].sort(naturalCompare); }
