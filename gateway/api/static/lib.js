// What every page shares: API calls with the user's key, the live stream, commands, formatting.

export const API = "/api/v1";
export const $ = (id) => document.getElementById(id);
export const keyInput = $("api-key");
keyInput.value = localStorage.getItem("linegw.key") || "";

export const session = { me: null, spec: null, classes: new Map() };

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (keyInput.value) h["X-API-Key"] = keyInput.value;
  return h;
}

// {ok, status, body}; never throws for an HTTP error, so pages can show the reason the gateway gives.
export async function api(path, options) {
  let res;
  try {
    res = await fetch(API + path, Object.assign({}, options, { headers: headers(options && options.headers) }));
  } catch (err) {
    return { ok: false, status: 0, body: { detail: "the gateway cannot be reached: " + err.message } };
  }
  const body = await res.json().catch(() => ({ detail: res.statusText }));
  return { ok: res.ok, status: res.status, body };
}

// A CSV export saved as a file: fetched with the key (a plain link could not send it).
export async function download(path, name) {
  const res = await fetch(API + path, { headers: headers({ Accept: "text/csv" }) });
  if (!res.ok) { showError((await res.json().catch(() => ({}))).detail || res.statusText); return; }
  const url = URL.createObjectURL(await res.blob());
  const a = Object.assign(document.createElement("a"), { href: url, download: name });
  document.body.appendChild(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

export function showError(msg) { $("error").textContent = msg || ""; }

export function text(s) { return s === null || s === undefined ? "" : String(s); }
export function esc(s) {
  return text(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
export function fmt(v) {
  if (typeof v !== "number") return text(v);
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return v.toFixed(a >= 1000 ? 0 : a >= 100 ? 1 : a >= 1 ? 2 : 3);
}
// Local time, as the line's clocks show it; the date only when it is not today.
export function timeOf(ts) {
  if (!ts) return "";
  const d = new Date(ts * 1000);
  const time = d.toLocaleTimeString([], { hour12: false });
  return d.toDateString() === new Date().toDateString() ? time : `${d.toLocaleDateString()} ${time}`;
}
export function ageOf(ts) {
  if (!ts) return "never";
  const s = Math.max(0, Date.now() / 1000 - ts);
  if (s < 60) return s.toFixed(0) + " s";
  if (s < 3600) return (s / 60).toFixed(0) + " min";
  return (s / 3600).toFixed(1) + " h";
}
export function unitOf(v) { return v && v.unit ? v.unit.symbol || "" : ""; }
// channel[2] before channel[10]: digit runs compare as numbers.
const collator = new Intl.Collator("en", { numeric: true });
export const naturalCompare = (a, b) => collator.compare(a, b);
export function stateBadge(state, available) {
  if (available === false) return `<span class="state unavailable">UNAVAILABLE</span>`;
  return `<span class="state s-${esc(state || "Undefined")}">${esc(state || "–")}</span>`;
}

export async function classSpec(cls) {
  if (!session.classes.has(cls)) {
    const r = await api("/spec/" + encodeURIComponent(cls));
    if (!r.ok) throw new Error(r.body.detail);
    session.classes.set(cls, r.body);
  }
  return session.classes.get(cls);
}

// --- the live stream ------------------------------------------------------------------------
// One WebSocket per page; it reconnects by itself and says so in the header.
export function live(filter, onMessage) {
  let socket = null, stopped = false, retry = null;
  const open = () => {
    const q = new URLSearchParams();
    if (filter.equipment) q.set("equipment", filter.equipment);
    for (const p of filter.paths || []) q.append("paths", p);
    if (keyInput.value) q.set("key", keyInput.value);
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${proto}//${location.host}${API}/live?${q}`);
    socket.onopen = () => { $("conn").textContent = "live"; };
    socket.onclose = () => {
      if (stopped) return;
      $("conn").textContent = "disconnected — retrying";
      retry = setTimeout(open, 2000);
    };
    socket.onmessage = (m) => onMessage(JSON.parse(m.data));
  };
  open();
  return () => { stopped = true; clearTimeout(retry); if (socket) socket.close(); };
}

// --- commands ------------------------------------------------------------------------------
// Asked for confirmation, answered with the result code and its reason; not shown to a caller who may not command.
export function confirmAction(message, okLabel) {
  const dlg = $("confirm");
  $("confirm-text").textContent = message;
  $("confirm-ok").textContent = okLabel;
  return new Promise((resolve) => {
    dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true });
    dlg.returnValue = "";
    dlg.showModal();
  });
}

export function describeResult(r) {
  const b = r.body || {};
  if (b.result) return `${r.status} ${b.result} (code ${b.code}): ${b.detail}`;
  return `${r.status || "no answer"}: ${b.detail || ""}`;
}

export async function sendCommand(eqId, command, stateNow, resultEl) {
  const where = stateNow ? ` It is in ${stateNow}.` : "";
  if (!(await confirmAction(`Send ${command} to ${eqId}?${where}`, `Send ${command}`))) return null;
  resultEl.className = "result"; resultEl.textContent = `${command}…`;
  const r = await api(`/equipment/${encodeURIComponent(eqId)}/commands/${encodeURIComponent(command)}`,
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ params: {} }) });
  resultEl.className = "result " + (r.ok ? "ok" : "refused");
  resultEl.textContent = describeResult(r);
  return r;
}

export function mayCommand() { return !!(session.me && session.me.may_command); }

