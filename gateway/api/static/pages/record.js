// #/record/<id> — a cell's manufacturing record: for each stage that made it (formation <- jelly roll <- electrode
// rolls), the machine, the production window, the process values while that very unit was made (n, mean, min,
// max, std), the alarms that touched it, and the energy and carbon each stage put into the cell.
import { api, esc, fmt, timeOf } from "../lib.js";

function values(pv) {
  const rows = Object.entries(pv).map(([path, v]) => `<tr><td>${esc(path)}</td><td class="num">${v.n}</td>
    <td class="num">${v.mean === null ? "–" : fmt(v.mean)}</td><td class="num">${v.min === null ? "–" : fmt(v.min)}</td>
    <td class="num">${v.max === null ? "–" : fmt(v.max)}</td><td class="num">${v.std === null ? "–" : fmt(v.std)}</td><td>${esc(v.unit === "1" ? "" : v.unit)}</td></tr>`).join("");
  return rows ? `<table class="pv"><thead><tr><th>value</th><th>n</th><th>mean</th><th>min</th><th>max</th><th>std</th><th>unit</th></tr></thead><tbody>${rows}</tbody></table>`
    : `<p class="muted small">no process values stored for this window</p>`;
}

function stage(s, energy) {
  const w = s.window, e = energy && energy.by_stage[s.class];
  const alarms = s.alarms.map((a) => `<li>${esc(a.code)} ${esc(a.text)} · ${esc(timeOf(a.raised_ts))}${a.cleared_ts ? " – " + esc(timeOf(a.cleared_ts)) : " (active)"}</li>`).join("");
  return `<section class="panel stage-record" data-unit="${esc(s.unit_id)}"><h3>${esc(s.unit_type.replace(/_/g, " "))}
    <a href="#/trace/${encodeURIComponent(s.unit_id)}">${esc(s.unit_id)}</a> · <a href="#/equipment/${encodeURIComponent(s.equipment)}">${esc(s.equipment)}</a>
    ${s.result ? `· <span class="r-${esc(s.result)}">${esc(s.result)}</span>` : ""}</h3>
    <p class="small">${esc(timeOf(w.start))} – ${esc(timeOf(w.end))} (${fmt(w.seconds)} s${w.channel ? `, channel ${w.channel}` : ""}) <span class="muted">${esc(w.rule)}</span></p>
    ${e ? `<p class="small energy">energy into this cell: <b>${e.kwh.toFixed(4)}</b> kWh, <b>${e.kg_co2e.toFixed(4)}</b> kgCO2e</p>` : ""}
    ${values(s.process_values)}
    ${alarms ? `<h4 class="small">alarms</h4><ul class="alarm-list">${alarms}</ul>` : ""}</section>`;
}

export async function mount(root, unitId) {
  root.innerHTML = `<section class="panel"><form class="toolbar" id="r-form"><label>cell ID
      <input type="text" id="r-id" size="28" value="${esc(unitId || "")}" required></label>
      <button class="primary" type="submit">Show record</button></form></section><div id="r-out"></div>`;
  root.querySelector("#r-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const v = root.querySelector("#r-id").value.trim();
    if (v) location.hash = "#/record/" + encodeURIComponent(v);
  });
  if (!unitId) return null;
  const out = root.querySelector("#r-out");
  out.textContent = "reading the record…";
  const rec = await api(`/record/${encodeURIComponent(unitId)}`);
  if (!rec.ok) { out.innerHTML = `<section class="panel err">${esc(rec.body.detail)}</section>`; return null; }
  const stages = rec.body.stages;
  const span = stages.length ? [Math.min(...stages.map((s) => s.window.start)), Math.max(...stages.map((s) => s.window.end))] : null;
  const energy = span ? await api(`/energy?start=${span[0] - 1}&end=${span[1] + 1}&cell=${encodeURIComponent(unitId)}`) : null;
  const cellEnergy = energy && energy.ok ? energy.body.cell : null;
  out.innerHTML = `${cellEnergy ? `<section class="panel" id="r-energy">energy <b>${cellEnergy.kwh.toFixed(4)}</b> kWh ·
      carbon <b>${cellEnergy.kg_co2e.toFixed(4)}</b> kgCO2e <span class="muted small">(manufacturing stages, over the record's span)</span></section>` : ""}
    ${stages.map((s) => stage(s, cellEnergy)).join("")}`;
  return null;
}
