// #/alarms — active alarms and their history, filtered by machine, severity and time; acknowledgement for
// operators (a cleared alarm nobody acknowledged included); occurrences per code (Pareto) for the range.
import { api, describeResult, download, esc, live, mayCommand, showError, timeOf } from "../lib.js";

const RANGES = [["1 h", "-1h"], ["8 h", "-8h"], ["24 h", "-24h"], ["7 days", "-7d"]];
const SEVERITIES = [["any", ""], ["≥ 300", "300"], ["≥ 500", "500"], ["≥ 700", "700"], ["≥ 900", "900"]];

export async function mount(root) {
  const eqs = await api("/equipment");
  if (!eqs.ok) { showError(eqs.body.detail); return null; }
  root.innerHTML = `
    <section class="panel">
      <div class="toolbar">
        <label>machine <select id="f-eq"><option value="">all</option>${eqs.body.map((m) => `<option>${esc(m.id)}</option>`).join("")}</select></label>
        <label>severity <select id="f-sev">${SEVERITIES.map(([l, v]) => `<option value="${v}">${esc(l)}</option>`).join("")}</select></label>
        <label>time <select id="f-range">${RANGES.map(([l, v]) => `<option value="${v}" ${v === "-24h" ? "selected" : ""}>${esc(l)}</option>`).join("")}</select></label>
        <button type="button" id="a-csv">CSV</button>
        <span id="ack-result" class="result small"></span>
      </div>
    </section>
    <div class="cols alarms-cols">
      <div>
        <section class="panel"><h3>Active now <span id="n-active" class="muted small"></span></h3>
          <table><thead><tr><th>machine</th><th>code</th><th>alarm</th><th>severity</th><th>raised</th><th></th></tr></thead><tbody id="active"></tbody></table></section>
        <section class="panel"><h3>History <span id="n-hist" class="muted small"></span></h3>
          <div class="scroll" style="max-height:30rem"><table><thead><tr><th>machine</th><th>code</th><th>alarm</th><th>severity</th><th>raised</th><th>cleared</th><th>acknowledged</th></tr></thead>
          <tbody id="history"></tbody></table></div></section>
      </div>
      <div><section class="panel"><h3>Occurrences per code <span id="n-total" class="muted small"></span></h3><div class="pareto" id="pareto"></div></section></div>
    </div>`;
  const $ = (sel) => root.querySelector(sel);
  const filters = () => {
    const q = new URLSearchParams();
    if ($("#f-eq").value) q.set("equipment", $("#f-eq").value);
    if ($("#f-sev").value) q.set("min_severity", $("#f-sev").value);
    return q;
  };
  // The runtime's active list says whether, the store's history also says who.
  const ackButton = (a) => (a.acknowledged ? (a.acked_by ? `by ${esc(a.acked_by)}` : "acknowledged") : mayCommand()
    ? `<button type="button" data-ack="${a.code}" data-eq="${esc(a.equipment)}" data-occ="${esc(a.occurrence_id)}">Ack</button>` : "no");

  async function refresh() {
    const q = filters();
    const active = await api(`/alarms?active=true&${q}`);
    q.set("start", $("#f-range").value);
    const [hist, pareto] = await Promise.all([api(`/alarms?${q}`), api(`/alarms/pareto?${q}`)]);
    for (const r of [active, hist, pareto]) if (!r.ok) { showError(r.body.detail); return; }
    $("#n-active").textContent = `(${active.body.length})`;
    $("#active").innerHTML = active.body.map((a) => `<tr><td><a href="#/equipment/${encodeURIComponent(a.equipment)}">${esc(a.equipment)}</a></td>
      <td>${a.code}</td><td>${esc(a.text)}</td><td>${a.severity}</td><td>${esc(timeOf(a.raised_ts))}</td><td>${ackButton(a)}</td></tr>`).join("")
      || `<tr><td colspan="6" class="muted">none</td></tr>`;
    $("#n-hist").textContent = `(${hist.body.length})`;
    $("#history").innerHTML = hist.body.map((a) => `<tr><td>${esc(a.equipment)}</td><td>${a.code}</td><td>${esc(a.text)}</td><td>${a.severity}</td>
      <td>${esc(timeOf(a.raised_ts))}</td><td>${a.active ? "<b>active</b>" : esc(timeOf(a.cleared_ts))}</td><td>${ackButton(a)}</td></tr>`).join("")
      || `<tr><td colspan="7" class="muted">none in this range</td></tr>`;
    const top = Math.max(1, ...pareto.body.codes.map((c) => c.count));
    $("#n-total").textContent = `(${pareto.body.total} in the range)`;
    $("#pareto").innerHTML = pareto.body.codes.map((c) => `<span title="${esc(c.equipment)} code ${c.code}">${esc(c.equipment)} · ${esc(c.id || c.code)}</span>
      <div class="bar" style="width:${(100 * c.count / top).toFixed(1)}%"></div><span class="num">${c.count}</span>`).join("")
      || `<span class="muted">no alarms in this range</span>`;
  }
  // One listener for every Ack button, present and future: tables are redrawn whenever an alarm changes.
  root.addEventListener("click", async (e) => {
    const b = e.target.closest("button[data-ack]");
    if (!b || b.disabled) return;
    b.disabled = true;
    const r = await api(`/equipment/${encodeURIComponent(b.dataset.eq)}/alarms/${b.dataset.ack}/ack?occurrence_id=${encodeURIComponent(b.dataset.occ)}`, { method: "POST" });
    $("#ack-result").className = "result small " + (r.ok ? "ok" : "refused");
    $("#ack-result").textContent = describeResult(r);
    refresh();
  });
  for (const id of ["#f-eq", "#f-sev", "#f-range"]) $(id).addEventListener("change", refresh);
  $("#a-csv").addEventListener("click", () => {
    const q = filters();
    q.set("start", $("#f-range").value);
    download(`/alarms?${q}&format=csv`, "alarms.csv");
  });
  await refresh();
  let pending = null;
  const stop = live({ paths: ["-"] }, (msg) => {  // "-" matches no sample path: only alarms, states and links come
    if (msg.kind !== "alarm" || pending) return;
    pending = setTimeout(() => { pending = null; refresh(); }, 300);
  });
  return () => { stop(); clearTimeout(pending); };
}
