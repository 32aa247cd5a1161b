// #/equipment/<id> — one machine: state and commands, trends from the history API, variables grouped by
// sub-unit with quality and age, active alarms, readable events, and for a formation rack its channel grid.
import { ageOf, api, classSpec, describeResult, download, esc, fmt, live, mayCommand, naturalCompare, sendCommand,
         session, showError, stateBadge, timeOf, unitOf } from "../lib.js";
import { Trend, rangePicker } from "../chart.js";

const DEFAULT_TREND = {
  coater: ["web.line_speed", "web.line_speed_setpoint"],
  winder: ["winding.speed", "tension.cathode"],
  formation: ["rack.temperature", "rack.power"],
};
const MAX_TREND = 8;
const CHANNEL = "channel";
const CH_STATUS = ["idle", "cc_charge", "cv_charge", "rest", "cc_discharge", "finished", "paused", "fault", "disconnected"];
// Commands a button can send: those without required parameters (mode and recipe changes need a form).
const needsForm = (c) => (c.params || []).some((p) => p.required);

function split(path) {
  const [head, ...rest] = path.split(".");
  const m = head.match(/^(\w+)\[(\d+)\]$/);
  return m ? { group: m[1], index: Number(m[2]), name: rest.join(".") } : { group: head, index: null, name: rest.join(".") };
}

export function describeEvent(e) {
  const p = e.payload || {};
  const parts = [];
  for (const [k, v] of Object.entries(p)) {
    if (v === null || v === "" || typeof v === "object") continue;
    parts.push(`${k.replace(/_/g, " ")} ${v}`);
  }
  if (p.made_from && p.made_from.length) parts.push(`from ${p.made_from.join(", ")}`);
  if (p.measurements) parts.push(Object.entries(p.measurements).map(([k, v]) => `${k.replace(/_/g, " ")} ${fmt(v)}`).join(", "));
  return parts.join(" · ");
}

export async function mount(root, id) {
  const r = await api(`/equipment/${encodeURIComponent(id)}`);
  if (!r.ok) { showError(r.body.detail); return null; }
  const eq = r.body;
  const spec = await classSpec(eq["class"]);
  const values = new Map(eq.values.map((v) => [v.path, v]));
  const isRack = spec.variables.some((v) => v.path.startsWith(CHANNEL + "[]."));
  const commands = spec.commands.filter((c) => !needsForm(c) && c.id !== "AcknowledgeAlarm");

  root.innerHTML = `
    <section class="panel">
      <div class="machine-head">
        <h2>${esc(eq.id)}</h2><span class="muted">${esc(eq["class"])} · ${esc(eq.identity.manufacturer || "")} ${esc(eq.identity.model || "")} · ${esc(eq.protocol)}</span>
        <span id="m-state"></span><span id="m-facts" class="small"></span>
      </div>
      <div class="toolbar" id="commands" style="margin-top:.5rem"></div>
    </section>
    <div class="cols">
      <div>
        <section class="panel">
          <h3>Trend</h3>
          <div class="toolbar"><select id="t-add" aria-label="add a variable"></select><button id="t-add-btn" type="button">add</button>
            <span class="chips" id="t-chips"></span></div>
          <div class="toolbar"><span id="t-range" class="toolbar" style="margin:0"></span>
            <button type="button" id="t-csv">CSV</button><span class="muted small">drag to zoom · double-click to zoom out</span></div>
          <div id="trend" class="chart"></div>
          <div id="t-status" class="muted small"></div>
        </section>
        ${isRack ? `<section class="panel" id="rack">
          <h3>Channels <span class="muted small" id="ch-count"></span></h3>
          <div class="legend">${CH_STATUS.map((s) => `<span><i class="ch-${s}"></i>${s.replace("_", " ")}</span>`).join("")}</div>
          <div id="ch-info" class="muted"></div>
          <div class="grid" id="ch-grid"></div>
          <h3 style="margin-top:.8rem">Channel curve <span id="ch-title" class="muted small">click a channel</span></h3>
          <div class="toolbar"><button type="button" id="ch-program">its step program</button>
            <span class="muted small">or the trend's range when off</span></div>
          <div id="ch-curve" class="chart"></div>
        </section>` : ""}
      </div>
      <div>
        <section class="panel"><h3>Active alarms</h3><table><tbody id="m-alarms"></tbody></table><div id="ack-result" class="result small"></div></section>
        <section class="panel"><h3>Variables</h3><div class="scroll vars" id="vars"></div></section>
        <section class="panel"><h3>Recent events</h3><ul class="events" id="m-events"></ul></section>
      </div>
    </div>`;
  const $ = (sel) => root.querySelector(sel);

  // --- state and commands -------------------------------------------------------------------
  function renderHead() {
    $("#m-state").innerHTML = stateBadge(eq.packml_state, eq.available);
    $("#m-facts").innerHTML = `mode <b>${esc(eq.mode || "–")}</b> · authority <b>${esc(eq.authority || "–")}</b> · health <b>${esc(eq.health || "–")}</b>` +
      (eq.available ? "" : ` · link <b>${esc(eq.link_reason || "down")}</b>`) + ` · last data ${esc(ageOf(eq.last_data_ts))} ago`;
  }
  renderHead();
  const cmdBar = $("#commands");
  if (mayCommand()) {
    cmdBar.innerHTML = commands.map((c) => `<button type="button" data-cmd="${esc(c.id)}">${esc(c.id)}</button>`).join("") +
      `<span id="cmd-result" class="result"></span>`;
    cmdBar.querySelectorAll("[data-cmd]").forEach((b) => b.addEventListener("click", () =>
      sendCommand(eq.id, b.dataset.cmd, eq.packml_state, $("#cmd-result"))));
  } else {
    const me = session.me || {};
    cmdBar.innerHTML = `<span class="muted small">Commands are hidden: ${esc(me.command_refusal || "this caller may not command")}</span>`;
  }

  // --- trend ----------------------------------------------------------------------------------
  const numeric = new Set(spec.variables.filter((v) => ["float", "int", "double", "uint"].includes(v.type) && !v.enum)
    .map((v) => v.path));
  const trendable = () => [...values.keys()].filter((p) => {
    const s = split(p);
    return numeric.has(s.index === null ? p : `${s.group}[].${s.name}`);
  }).sort(naturalCompare);
  let chosen = (DEFAULT_TREND[eq["class"]] || []).filter((p) => values.has(p));
  if (!chosen.length) chosen = trendable().slice(0, 1);
  let range = { span: 3600 };
  const trend = new Trend($("#trend"));
  const curve = isRack ? new Trend($("#ch-curve"), { height: 220 }) : null;
  let channel = null;

  function renderPicker() {
    $("#t-add").innerHTML = trendable().filter((p) => !chosen.includes(p))
      .map((p) => `<option value="${esc(p)}">${esc(p)}${unitOf(values.get(p)) ? " (" + esc(unitOf(values.get(p))) + ")" : ""}</option>`).join("");
    $("#t-chips").innerHTML = chosen.map((p) => `<span class="chip">${esc(p)}<button type="button" data-rm="${esc(p)}" title="remove">×</button></span>`).join("");
    $("#t-chips").querySelectorAll("[data-rm]").forEach((b) => b.addEventListener("click", () => {
      chosen = chosen.filter((p) => p !== b.dataset.rm); renderPicker(); loadTrend();
    }));
  }
  async function loadTrend() {
    $("#t-status").textContent = "loading…";
    try {
      const series = chosen.length ? await trend.load(eq.id, chosen, range) : [];
      if (!chosen.length) trend.draw();
      const n = series.reduce((k, s) => k + s.count, 0);
      $("#t-status").textContent = `${n} ${trend.bucket ? `averages of ${trend.bucket} s` : "samples"} in ${trend.loadedMs.toFixed(0)} ms`;
    } catch (err) {
      $("#t-status").textContent = err.message;
    }
    if (curve && channel !== null) loadCurve();
  }
  $("#t-add-btn").addEventListener("click", () => {
    const p = $("#t-add").value;
    if (!p || chosen.length >= MAX_TREND) return;
    chosen.push(p); renderPicker(); loadTrend();
  });
  $("#t-csv").addEventListener("click", () => {
    const end = range.end || Date.now() / 1000, start = range.start || end - range.span;
    const q = new URLSearchParams({ start: String(start), end: String(end), format: "csv" });
    chosen.forEach((p) => q.append("path", p));
    if (end - start > 900) q.set("bucket", "60s");
    download(`/equipment/${encodeURIComponent(eq.id)}/history?${q}`, `${eq.id}-history.csv`);
  });
  rangePicker($("#t-range"), (r2) => { range = r2; loadTrend(); }, 3600);
  renderPicker();
  loadTrend();

  // --- variables grouped by sub-unit --------------------------------------------------------
  const picked = new Map();  // array group -> shown index
  function renderVars() {
    const groups = new Map();
    for (const v of values.values()) {
      const s = split(v.path);
      if (!groups.has(s.group)) groups.set(s.group, { array: s.index !== null, rows: [] });
      groups.get(s.group).rows.push(Object.assign({ s }, v));
    }
    const open = new Set([...root.querySelectorAll("#vars details[open]")].map((d) => d.dataset.group));
    const first = !root.querySelector("#vars details");
    const html = [];
    for (const name of [...groups.keys()].sort(naturalCompare)) {
      const g = groups.get(name);
      let rows = g.rows, chooser = "";
      if (g.array) {
        const idx = [...new Set(rows.map((r) => r.s.index))].sort((a, b) => a - b);
        if (!picked.has(name) || !idx.includes(picked.get(name))) picked.set(name, idx[0]);
        chooser = ` <select data-pick="${esc(name)}">${idx.map((i) => `<option ${i === picked.get(name) ? "selected" : ""}>${i}</option>`).join("")}</select>
          <span class="muted small">${idx.length} of them</span>`;
        rows = rows.filter((r) => r.s.index === picked.get(name));
      }
      rows.sort((a, b) => naturalCompare(a.path, b.path));
      const isOpen = first ? !g.array || name === CHANNEL : open.has(name);
      html.push(`<details class="group" data-group="${esc(name)}" ${isOpen ? "open" : ""}><summary>${esc(name)}${g.array ? "[ ]" : ""}</summary>${chooser}
        <table><tbody>${rows.map((v) => `<tr><td>${esc(g.array ? v.s.name : v.path.slice(name.length + 1))}</td>
          <td class="num">${esc(fmt(v.value))}</td><td>${esc(unitOf(v))}</td>
          <td class="q-${esc(v.quality)}" title="${esc(v.reason || "")}"><span class="dot"></span>${esc(v.quality)}</td>
          <td class="num muted">${esc(ageOf(v.source_ts))}</td></tr>`).join("")}</tbody></table></details>`);
    }
    const box = $("#vars"), top = box.scrollTop;
    box.innerHTML = html.join("") || `<p class="muted">no values yet</p>`;
    box.scrollTop = top;
    box.querySelectorAll("[data-pick]").forEach((sel) => sel.addEventListener("change", () => {
      picked.set(sel.dataset.pick, Number(sel.value)); renderVars();
    }));
  }

  // --- alarms and events ----------------------------------------------------------------------
  async function renderAlarms() {
    const d = await api(`/alarms?active=true&equipment=${encodeURIComponent(eq.id)}`);
    const list = d.ok ? d.body : [];
    $("#m-alarms").innerHTML = list.map((a) => `<tr><td>${a.code}</td><td>${esc(a.text)}</td><td>${a.severity}</td>
      <td>${a.acknowledged ? "acknowledged" : mayCommand() ? `<button type="button" data-ack="${a.code}" data-occ="${esc(a.occurrence_id)}">Acknowledge</button>` : "unacknowledged"}</td></tr>`).join("")
      || `<tr><td class="muted">none</td></tr>`;
  }
  // One listener for every Ack button, present and future: the table is redrawn whenever an alarm changes.
  $("#m-alarms").addEventListener("click", async (e) => {
    const b = e.target.closest("button[data-ack]");
    if (!b || b.disabled) return;
    b.disabled = true;
    const res = await api(`/equipment/${encodeURIComponent(eq.id)}/alarms/${b.dataset.ack}/ack?occurrence_id=${encodeURIComponent(b.dataset.occ)}`, { method: "POST" });
    $("#ack-result").className = "result small " + (res.ok ? "ok" : "refused");
    $("#ack-result").textContent = describeResult(res);
    renderAlarms();
  });
  function addEvent(e) {
    const li = document.createElement("li");
    li.innerHTML = `<span class="t">${esc(timeOf(e.source_ts || e.ts))}</span><b>${esc(e.type)}</b> ${esc(describeEvent(e))}`;
    const ul = $("#m-events");
    ul.insertBefore(li, ul.firstChild);
    while (ul.children.length > 50) ul.removeChild(ul.lastChild);
  }
  renderAlarms();
  api(`/events?equipment=${encodeURIComponent(eq.id)}&limit=30`).then((ev) => {
    if (ev.ok) ev.body.slice().reverse().forEach(addEvent);
  });

  // --- formation rack: channel grid and a channel's curve ------------------------------------
  const chVal = (i, name) => values.get(`${CHANNEL}[${i}].${name}`);
  const chText = (i) => {
    const g = (n) => { const v = chVal(i, n); return v && v.value !== null && v.value !== undefined ? v : null; };
    const val = (n) => (g(n) ? g(n).value : "?");
    const num = (n) => (g(n) ? `${fmt(g(n).value)} ${unitOf(g(n))}` : `? ${unitOf(chVal(i, n))}`);
    const bad = chVal(i, "voltage") && chVal(i, "voltage").quality !== "good" ? ` · ${chVal(i, "voltage").quality} ${chVal(i, "voltage").reason || ""}` : "";
    return `channel ${i} · ${val("status")} · step ${val("step_index")} (${val("step_type")}) · ` +
      `${num("voltage")} · ${num("current")} · ${num("temperature")}` + (g("cell_id") ? ` · cell ${val("cell_id")}` : "") + bad;
  };
  function channels() {
    const n = (eq.counts || {})[CHANNEL];
    if (n) return n;
    return Math.max(0, ...[...values.keys()].map((p) => split(p)).filter((s) => s.group === CHANNEL).map((s) => s.index));
  }
  function renderGrid() {
    if (!isRack) return;
    const n = channels();
    const grid = $("#ch-grid");
    if (grid.children.length !== n) {
      grid.innerHTML = Array.from({ length: n }, (_, k) => `<div class="ch" data-ch="${k + 1}">${k + 1}</div>`).join("");
      $("#ch-count").textContent = `${n} channels`;
    }
    for (const el of grid.children) {
      const i = Number(el.dataset.ch);
      const st = chVal(i, "status");
      el.className = `ch ch-${st ? st.value : "idle"}` + (i === channel ? " sel" : "");
      el.title = chText(i);
    }
  }
  // When the channel's current (or, if idle, last) step program started: its steps count up from 1 and
  // fall back when a new cell starts. Points are {ts, lo, hi}: a raw sample, or a bucket's min and max.
  function lastProgram(pts) {
    let k = pts.length - 1;
    while (k >= 0 && !(pts[k].hi >= 1)) k--;  // idle at the end: the program before
    if (k < 0) return null;
    while (k > 0 && pts[k - 1].lo >= 1 && pts[k - 1].hi <= pts[k].lo) k--;
    return { ts: pts[k].ts, whole: k > 0 };  // whole: it started inside the data, not before it
  }
  async function programStart(i) {
    const path = encodeURIComponent(`${CHANNEL}[${i}].step_index`);
    const base = `/equipment/${encodeURIComponent(eq.id)}/history?path=${path}`;
    const raw = await api(`${base}&start=-15min`);
    const rawPts = raw.ok && raw.body.series.length ? raw.body.series[0].points.map((p) => ({ ts: p.ts, lo: p.value, hi: p.value })) : [];
    const recent = lastProgram(rawPts);
    if (recent && recent.whole) return recent.ts;
    // A program runs for hours on a real rack: look back a day, a minute at a time.
    const day = await api(`${base}&start=-24h&bucket=60s&agg=min,max`);
    const dayPts = day.ok && day.body.series.length ? day.body.series[0].points.map((p) => ({ ts: p.ts, lo: p.min, hi: p.max })) : [];
    const older = lastProgram(dayPts);
    return older ? older.ts : recent ? recent.ts : null;
  }
  let programOnly = false;
  async function loadCurve() {
    const title = `channel ${channel}` + (chVal(channel, "cell_id") ? ` · cell ${chVal(channel, "cell_id").value}` : "");
    const paths = [`${CHANNEL}[${channel}].voltage`, `${CHANNEL}[${channel}].current`];
    try {
      const start = programOnly ? await programStart(channel) : null;
      await curve.load(eq.id, paths, start ? { span: Math.max(10, Date.now() / 1000 - start) } : range);
      $("#ch-title").textContent = title + (start ? ` · program since ${timeOf(start)}` : programOnly ? " · no program start found: the chosen range" : "");
    } catch (err) {
      $("#ch-title").textContent = err.message;
    }
  }
  if (isRack) {
    $("#ch-program").addEventListener("click", (e) => {
      programOnly = !programOnly;
      e.currentTarget.classList.toggle("on", programOnly);
      if (channel !== null) loadCurve();
    });
    const grid = $("#ch-grid");
    grid.addEventListener("mouseover", (e) => {
      const el = e.target.closest("[data-ch]");
      if (el) $("#ch-info").textContent = chText(Number(el.dataset.ch));
    });
    grid.addEventListener("click", (e) => {
      const el = e.target.closest("[data-ch]");
      if (!el) return;
      channel = Number(el.dataset.ch);
      picked.set(CHANNEL, channel);
      renderGrid(); renderVars(); loadCurve();
    });
  }

  // --- live -----------------------------------------------------------------------------------
  let pending = null, closed = false;
  const schedule = () => {
    if (pending || closed) return;
    pending = setTimeout(() => { pending = null; renderVars(); renderGrid(); }, 500);
  };
  renderVars(); renderGrid();
  const stop = live({ equipment: eq.id }, (msg) => {
    if (msg.kind === "snapshot") return;
    if (msg.kind === "samples") {
      for (const s of msg.data.samples) values.set(s.path, Object.assign({}, values.get(s.path), s));
      trend.extend(msg.data.samples);
      if (curve) curve.extend(msg.data.samples);
      schedule();
    } else if (msg.kind === "state") {
      const st = msg.data.state || {};
      Object.assign(eq, { packml_state: st.packml_state, mode: st.operation_mode, authority: st.control_authority });
      renderHead();
    } else if (msg.kind === "link") {
      Object.assign(eq, { available: msg.data.available, link_reason: msg.data.reason });
      renderHead();
    } else if (msg.kind === "alarm") {
      renderAlarms();
    } else if (msg.kind === "event") {
      addEvent(msg.data);
    }
  });
  const ages = setInterval(() => { eq.last_data_ts = Math.max(eq.last_data_ts || 0, ...[...values.values()].slice(0, 50).map((v) => v.source_ts || 0)); renderHead(); }, 2000);
  return () => { closed = true; stop(); clearInterval(ages); clearTimeout(pending); trend.destroy(); if (curve) curve.destroy(); };
}
