// #/trace/<id> — a cell, jelly roll or electrode roll's genealogy both ways: what it was made from and
// what was made from it, each unit with its machine, time, result and key measurements.
import { api, download, esc, fmt, showError, timeOf } from "../lib.js";

const RECENT = 12;
const SHOWN_CHILDREN = 50;  // an electrode roll feeds hundreds of jelly rolls: the rest are counted, not listed

function node(n) {
  const m = Object.entries(n.measurements || {}).map(([k, v]) =>
    `${esc(k.replace(/_/g, " "))} <b>${esc(fmt(v))}</b>${n.measurement_units && n.measurement_units[k] ? " " + esc(n.measurement_units[k]) : ""}`);
  return `<div class="node" data-unit="${esc(n.unit_id)}"><a href="#/trace/${encodeURIComponent(n.unit_id)}"><b>${esc(n.unit_id)}</b></a>
    ${n.unit_type ? `<span class="muted">${esc(n.unit_type.replace(/_/g, " "))}</span>` : ""}
    ${n.result ? ` · <span class="r-${esc(n.result)}">${esc(n.result)}</span>${n.reason && n.reason !== "none" ? " (" + esc(n.reason) + ")" : ""}` : ""}
    ${n.equipment ? ` · <a href="#/equipment/${encodeURIComponent(n.equipment)}">${esc(n.equipment)}</a>` : ""}
    ${n.source_ts ? ` · ${esc(timeOf(n.source_ts))}` : ""}${n.job_id ? ` · job ${esc(n.job_id)}` : ""}
    ${m.length ? `<div class="small">${m.join(" · ")}</div>` : ""}${n.note ? `<div class="muted small">${esc(n.note)}</div>` : ""}</div>`;
}

function tree(n, key, root) {
  const kids = n[key] || [];
  const shown = kids.slice(0, SHOWN_CHILDREN);
  const more = kids.length > shown.length ? `<li class="muted small">… and ${kids.length - shown.length} more</li>` : "";
  return `<ul class="tree${root ? " root" : ""}"><li>${node(n)}${kids.length ? shown.map((k) => tree(k, key, false)).join("") + more : ""}</li></ul>`;
}

export async function mount(root, unitId) {
  root.innerHTML = `
    <section class="panel">
      <form class="toolbar" id="t-form"><label>cell, jelly roll or electrode roll ID
        <input type="text" id="t-id" size="28" value="${esc(unitId || "")}" required></label>
        <button class="primary" type="submit">Trace</button><button type="button" id="t-csv" ${unitId ? "" : "disabled"}>CSV</button>
        ${unitId ? `<a id="t-record" href="#/record/${encodeURIComponent(unitId)}">manufacturing record</a>` : ""}</form>
      <div class="small"><span class="muted">recently made:</span> <span id="recent"></span></div>
    </section>
    <div id="t-out"></div>`;
  const $ = (sel) => root.querySelector(sel);
  $("#t-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const v = $("#t-id").value.trim();
    if (v) location.hash = "#/trace/" + encodeURIComponent(v);
  });
  $("#t-csv").addEventListener("click", () => download(`/trace/${encodeURIComponent(unitId)}?format=csv`, `trace-${unitId}.csv`));
  api(`/events?type=UnitProcessed&limit=${RECENT}`).then((r) => {
    if (!r.ok) return;
    $("#recent").innerHTML = r.body.map((e) => e.payload && e.payload.unit_id).filter(Boolean)
      .map((u) => `<a href="#/trace/${encodeURIComponent(u)}">${esc(u)}</a>`).join(" · ") || "none yet";
  });
  if (!unitId) return null;
  const [back, fwd] = await Promise.all([api(`/trace/${encodeURIComponent(unitId)}`), api(`/trace/${encodeURIComponent(unitId)}/made_into`)]);
  if (!back.ok) { $("#t-out").innerHTML = `<section class="panel err">${esc(back.body.detail)}</section>`; return null; }
  if (!fwd.ok) showError(fwd.body.detail);
  const used = fwd.ok ? (fwd.body.made_into || []) : [];
  $("#t-out").innerHTML = `<div class="trees">
    <section class="panel" id="made-from"><h3>Made from <span class="muted small">(upstream)</span></h3>${tree(back.body, "made_from", true)}</section>
    <section class="panel" id="made-into"><h3>Made into <span class="muted small">(downstream, ${used.length} direct)</span></h3>
      ${fwd.ok ? tree(fwd.body, "made_into", true) : ""}${used.length ? "" : `<p class="muted small">nothing made from ${esc(unitId)} yet</p>`}</section>
  </div>`;
  return null;
}
