// The dashboard's entry: hash routes to pages. Pages are modules under pages/, each exporting
// mount(root, ...params) -> cleanup function. Views have URLs (#/line, #/equipment/<id>, #/alarms,
// #/trace/<id>, #/record/<id>, #/performance) so they can be bookmarked and shared.
import { $, api, keyInput, session, showError } from "./lib.js";

// --- routes ---------------------------------------------------------------------------------
const routes = [
  [/^#\/line$/, "line", () => import("./pages/line.js")],
  [/^#\/equipment\/([^/]+)$/, "line", () => import("./pages/machine.js")],
  [/^#\/alarms$/, "alarms", () => import("./pages/alarms.js")],
  [/^#\/trace(?:\/(.+))?$/, "trace", () => import("./pages/trace.js")],
  [/^#\/record(?:\/(.+))?$/, "trace", () => import("./pages/record.js")],
  [/^#\/performance$/, "performance", () => import("./pages/performance.js")],
];
let cleanup = null;
let routed = 0; // counts navigations: a page that finishes mounting after the next one began is stopped at once

async function route() {
  const mine = ++routed;
  const hash = location.hash || "#/line";
  const found = routes.find(([re]) => re.test(hash));
  if (!found) { location.replace("#/line"); return; }
  const [re, nav, load] = found;
  const params = hash.match(re).slice(1).map((p) => (p === undefined ? undefined : decodeURIComponent(p)));
  if (cleanup) { cleanup(); cleanup = null; }
  showError("");
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("current", a.dataset.nav === nav));
  // Each page gets a container of its own: one still mounting when the user moves on writes into a
  // detached element, never over the next page.
  const root = document.createElement("div");
  $("view").replaceChildren(root);
  try {
    const page = await load();
    const stop = (await page.mount(root, ...params)) || null;
    if (mine === routed) cleanup = stop;
    else if (stop) stop();
  } catch (err) {
    showError(err.message);
    console.warn(err);
  }
}

async function whoAmI() {
  const r = await api("/me");
  session.me = r.ok ? r.body : null;
  $("who").textContent = r.ok ? `${r.body.user} (${r.body.role})` : "";
  if (!r.ok) showError(r.body.detail);
}

async function alarmBadge() {
  const r = await api("/alarms?active=true&limit=10000");
  const badge = $("alarm-badge");
  badge.hidden = !(r.ok && r.body.length);
  if (r.ok) badge.textContent = String(r.body.length);
}

keyInput.addEventListener("change", async () => {
  localStorage.setItem("linegw.key", keyInput.value);
  await whoAmI();
  route();
});
$("key-form").addEventListener("submit", (e) => { e.preventDefault(); keyInput.dispatchEvent(new Event("change")); });
window.addEventListener("hashchange", route);
await whoAmI();
route();
alarmBadge();
setInterval(alarmBadge, 5000);
