// #/line — the line as it flows (coating → winding → formation): one tile per machine with its PackML state,
// mode, authority, health, key values with units, active alarms and throughput, kept live over the WebSocket.
import { api, esc, fmt, live, naturalCompare, showError, stateBadge, unitOf } from "../lib.js";

const STAGES = [["coater", "Coating"], ["winder", "Winding"], ["formation", "Formation"]];
export const KEY_VALUES = {
  coater: ["web.line_speed", "coating_head.pump_flow", "quality.areal_weight_cv", "rewinder.roll_length"],
  winder: ["winding.speed", "tension.cathode", "environment.dew_point", "winding.cycle_time"],
  formation: ["rack.temperature", "rack.power", "rack.energy_total", "rack.tray_id"],
};
const FALLBACK_KEYS = ["counters.current_speed"];
const COUNTER = "counters.processed_count";
const HEALTH = "health.device_health";
const THROUGHPUT_EVERY_MS = 60000;

function tone(m) {
  if (!m.available) return "st-off";
  if ((m.active_alarms || []).some((a) => a.stop_reason) || /Abort|Stopping/.test(m.packml_state || "")) return "st-bad";
  if ((m.active_alarms || []).length || /Held|Hold|Suspend/.test(m.packml_state || "")) return "st-warn";
  return m.packml_state === "Execute" ? "st-good" : "";
}

// Units per hour from the processed counter over the last hour (bucket first/last, resets skipped).
async function throughput(id) {
  const r = await api(`/equipment/${encodeURIComponent(id)}/history?path=${COUNTER}&start=-1h&bucket=5m&agg=first,last`);
  if (!r.ok || !r.body.series.length) return null;
  const pts = r.body.series[0].points;
  if (!pts.length) return null;
  let made = 0, prev = null;
  for (const p of pts) {
    if (prev !== null && p.first >= prev) made += p.first - prev;
    if (p.last >= p.first) made += p.last - p.first;
    prev = p.last;
  }
  const hours = Math.max((Date.now() / 1000 - pts[0].ts) / 3600, 1 / 60);
  return made / Math.min(hours, 1);
}

export async function mount(root) {
  root.innerHTML = `<div class="flow" id="flow"></div>`;
  const flow = root.querySelector("#flow");
  const r = await api("/equipment");
  if (!r.ok) { showError(r.body.detail); return null; }
  const machines = new Map(r.body.map((m) => [m.id, Object.assign(m, { values: new Map(), rate: null })]));
  const known = STAGES.map(([cls]) => cls);
  const stages = STAGES.concat([...new Set(r.body.map((m) => m["class"]).filter((c) => !known.includes(c)))].map((c) => [c, c]))
    .filter(([cls]) => r.body.some((m) => m["class"] === cls));
  flow.style.setProperty("--stages", String(stages.length));
  flow.innerHTML = stages.map(([cls, title]) => `<div class="stage"><h2>${esc(title)}</h2>${r.body
    .filter((m) => m["class"] === cls).sort((a, b) => naturalCompare(a.id, b.id))
    .map((m) => `<div class="tile" data-id="${esc(m.id)}"></div>`).join("")}</div>`).join("");
  const keysOf = (m) => KEY_VALUES[m["class"]] || FALLBACK_KEYS;

  function render(id) {
    const m = machines.get(id);
    const el = flow.querySelector(`.tile[data-id="${CSS.escape(id)}"]`);
    if (!m || !el) return;
    el.className = "tile " + tone(m);
    const values = keysOf(m).map((p) => {
      const v = m.values.get(p);
      const name = p.split(".").pop().replace(/_/g, " ");
      return `<div class="kv" data-path="${esc(p)}">${esc(name)}<b>${v ? esc(fmt(v.value)) + " " + esc(unitOf(v)) : "–"}</b></div>`;
    }).join("");
    const alarms = (m.active_alarms || []).map((a) =>
      `<li class="${a.acknowledged ? "acked" : ""}">${esc(a.text)} <span class="muted">(${a.severity}${a.acknowledged ? ", acknowledged" : ""})</span></li>`).join("");
    el.innerHTML = `<h3><a href="#/equipment/${encodeURIComponent(m.id)}">${esc(m.id)}</a> ${stateBadge(m.packml_state, m.available)}</h3>
      <dl><dt>mode</dt><dd>${esc(m.mode || "–")}</dd><dt>authority</dt><dd>${esc(m.authority || "–")}</dd>
      <dt>health</dt><dd>${esc(m.health || "–")}</dd>
      <dt>throughput</dt><dd data-rate>${m.rate === null ? "–" : esc(fmt(Math.round(m.rate)))} units/h</dd>
      ${m.available ? "" : `<dt>link</dt><dd>${esc(m.link_reason || "down")}</dd>`}</dl>
      <div class="values">${values}</div>
      <ul class="alarm-list">${alarms}</ul>`;
  }

  async function refresh(id) {
    const m = machines.get(id);
    const q = keysOf(m).map((p) => "paths=" + encodeURIComponent(p)).join("&");
    const d = await api(`/equipment/${encodeURIComponent(id)}?${q}`);
    if (!d.ok) return;
    Object.assign(m, { available: d.body.available, link_reason: d.body.link_reason, packml_state: d.body.packml_state,
                       mode: d.body.mode, authority: d.body.authority, health: d.body.health,
                       active_alarms: d.body.active_alarms });
    for (const v of d.body.values || []) m.values.set(v.path, v);
    render(id);
  }
  async function rates() {
    for (const id of machines.keys()) {
      machines.get(id).rate = await throughput(id);
      render(id);
    }
  }
  await Promise.all([...machines.keys()].map(refresh));
  rates();
  const timer = setInterval(rates, THROUGHPUT_EVERY_MS);

  const allKeys = [...new Set([...machines.values()].flatMap(keysOf))].concat([HEALTH]);
  const stop = live({ paths: allKeys }, (msg) => {
    const m = machines.get(msg.equipment);
    if (!m) return;
    if (msg.kind === "samples") {
      const keys = keysOf(m);
      for (const s of msg.data.samples) {
        if (keys.includes(s.path)) m.values.set(s.path, s);
        else if (s.path === HEALTH) m.health = s.value;
      }
      render(m.id);
    } else if (msg.kind === "state") {
      const st = msg.data.state || {};
      Object.assign(m, { packml_state: st.packml_state, mode: st.operation_mode, authority: st.control_authority });
      render(m.id);
    } else if (msg.kind === "link") {
      Object.assign(m, { available: msg.data.available, link_reason: msg.data.reason });
      render(m.id);
    } else if (msg.kind === "alarm") {
      refresh(m.id);
    }
  });
  return () => { stop(); clearInterval(timer); };
}
