// #/performance — how well the line ran and what it drew: equipment time per SEMI E10 state, the ISO 22400-2 KPIs
// and OEE per machine and for the line, the bottleneck with its evidence, stop reasons; each machine's metered
// energy attributed to the units it made, energy and carbon per cell, and the reconciliation.
import { api, esc, fmt } from "../lib.js";

const RANGES = [["-1h", "last hour"], ["-8h", "last 8 h"], ["-24h", "last 24 h"], ["-7d", "last 7 days"]];
const E10 = ["PRD", "SBY", "ENG", "SDT", "UDT", "NST"];
const pct = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)} %`);
const hours = (s) => (s / 3600).toFixed(2);

function timeBar(time) {
  const total = Object.values(time).reduce((a, b) => a + b, 0) || 1;
  return `<div class="e10bar">${E10.concat(["unobserved"]).filter((k) => time[k]).map((k) =>
    `<span class="e10-${k}" style="width:${(100 * time[k] / total).toFixed(2)}%" title="${k} ${hours(time[k])} h"></span>`).join("")}</div>`;
}

function oeeTable(report) {
  const rows = report.machines.map((m) => `<tr data-eq="${esc(m.equipment)}">
    <td><a href="#/equipment/${encodeURIComponent(m.equipment)}">${esc(m.equipment)}</a></td><td>${esc(m.class)}</td>
    <td>${timeBar(m.time_s)}</td><td class="num">${pct(m.availability)}</td><td class="num">${pct(m.effectiveness)}</td>
    <td class="num">${pct(m.quality_ratio)}</td><td class="num"><b>${pct(m.oee)}</b></td>
    <td class="num">${m.mtbf_s === null ? "–" : hours(m.mtbf_s)}</td><td class="num">${m.mttr_s === null ? "–" : (m.mttr_s / 60).toFixed(1)}</td></tr>`).join("");
  return `<table id="oee-table"><thead><tr><th>machine</th><th>class</th><th>time per E10 state</th><th>availability</th>
    <th>effectiveness</th><th>quality</th><th>OEE</th><th>MTBF h</th><th>MTTR min</th></tr></thead><tbody>${rows}</tbody></table>
    <p class="small muted">${E10.map((k) => `<span class="key e10-${k}"></span>${k}`).join(" ")} · KPIs after ISO 22400-2, time states and MTBF/MTTR after SEMI E10</p>`;
}

function stops(report) {
  const items = report.machines.flatMap((m) => m.stop_reasons.map((r) => ({ eq: m.equipment, ...r })))
    .sort((a, b) => b.downtime_s - a.downtime_s).slice(0, 10);
  if (!items.length) return `<p class="muted small">no stop-reason alarm in the range</p>`;
  return `<table><thead><tr><th>machine</th><th>alarm</th><th>occurrences</th><th>down min</th></tr></thead><tbody>${items.map((r) =>
    `<tr><td>${esc(r.eq)}</td><td>${esc(r.code)} ${esc(r.text)}</td><td class="num">${r.occurrences}</td><td class="num">${(r.downtime_s / 60).toFixed(1)}</td></tr>`).join("")}</tbody></table>`;
}

function energyTable(e) {
  const rows = Object.entries(e.machines).map(([eq, m]) => m.metered
    ? `<tr><td>${esc(eq)}</td><td>${esc(m.class)}</td><td class="num">${fmt(m.metered_kwh)}</td><td class="num">${fmt(m.attributed_kwh)}</td>
       <td class="num">${fmt(m.idle_kwh)}</td><td class="num">${fmt(m.unfinished_kwh)}</td><td class="num">${m.units}</td><td class="num">${fmt(m.kg_co2e)}</td></tr>`
    : `<tr><td>${esc(eq)}</td><td>${esc(m.class)}</td><td colspan="6" class="muted">no meter</td></tr>`).join("");
  const r = e.reconciliation, per = e.cells.per_cell;
  return `<table id="energy-table"><thead><tr><th>machine</th><th>class</th><th>metered kWh</th><th>to units</th><th>idle</th>
    <th>unfinished</th><th>units</th><th>kgCO2e</th></tr></thead><tbody>${rows}</tbody></table>
    <p id="energy-cells">${e.cells.count} cells: <b>${fmt(e.cells.kwh)}</b> kWh${per ? `, <b>${per.kwh.toFixed(4)}</b> kWh and <b>${per.kg_co2e.toFixed(4)}</b> kgCO2e per cell` : ""}</p>
    <p class="small muted" id="energy-reconciled">meters ${fmt(r.meters_kwh)} kWh = cells ${fmt(r.cells_kwh)} + in process ${fmt(r.in_process_kwh)}
    + unattributed ${fmt(r.unattributed_kwh)} (difference ${r.difference_kwh.toExponential(1)})</p>`;
}

export async function mount(root) {
  root.innerHTML = `
    <section class="panel"><form class="toolbar" id="p-form"><label>range <select id="p-range">${RANGES.map(([v, t]) =>
      `<option value="${v}">${t}</option>`).join("")}</select></label><button type="submit">Refresh</button>
      <span class="muted small" id="p-when"></span></form>
      <div class="kpis" id="p-line"></div></section>
    <div class="cols"><div>
      <section class="panel"><h3>Machines</h3><div class="scroll" id="p-oee">computing…</div></section>
      <section class="panel"><h3>Energy</h3><div class="scroll" id="p-energy">computing…</div></section>
    </div><div>
      <section class="panel"><h3>Bottleneck</h3><div id="p-neck"></div></section>
      <section class="panel"><h3>Stop reasons</h3><div id="p-stops"></div></section>
    </div></div>`;
  const $ = (sel) => root.querySelector(sel);
  const load = async () => {
    const start = $("#p-range").value;
    $("#p-when").textContent = "computing…";
    const [oee, energy] = await Promise.all([api(`/oee?start=${start}`), api(`/energy?start=${start}`)]);
    $("#p-when").textContent = oee.ok ? `${oee.body.range.start_time} .. ${oee.body.range.end_time}` : "";
    if (oee.ok) {
      const l = oee.body.line, neck = oee.body.bottleneck;
      $("#p-line").innerHTML = `<span class="kv">line OEE<b id="line-oee">${pct(l.oee)}</b></span>
        <span class="kv">availability<b>${pct(l.availability)}</b></span><span class="kv muted">${esc(l.oee_basis)}</span>`;
      $("#p-oee").innerHTML = oeeTable(oee.body);
      $("#p-neck").innerHTML = neck ? `<p id="bottleneck"><b>${esc(neck.stage)}</b> (${esc(neck.equipment)})</p><p class="small">${esc(neck.why)}</p>`
        : `<p class="muted">not enough production in the range to tell</p>`;
      $("#p-stops").innerHTML = stops(oee.body);
    } else {
      $("#p-oee").innerHTML = `<p class="err">${esc(oee.body.detail)}</p>`;
    }
    $("#p-energy").innerHTML = energy.ok ? energyTable(energy.body) : `<p class="err">${esc(energy.body.detail)}</p>`;
  };
  $("#p-form").addEventListener("submit", (e) => { e.preventDefault(); load(); });
  $("#p-range").addEventListener("change", load);
  await load();
  return null;
}
