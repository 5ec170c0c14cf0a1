// The dashboard: live serving metrics (polled from /api/stats), the offline evaluation report of the bundle
// in use, the bundle itself, catalog and event statistics (/api/web/overview). Charts are hand-drawn SVG.

import { clear, fmt, h } from "./dom.js";
import { get } from "./api.js";
import { barChart, lineChart } from "./charts.js";
import { startExperimentPanel } from "./experiment.js";

const POLL_MS = 2000;
const OVERVIEW_MS = 15000;
// Requests the dashboard and the pages make themselves; "API" figures leave them out (the table shows all).
const UI_ROUTES = new Set(["/", "/dashboard", "/web/{path:path}", "/api/stats", "/api/web/overview", "/api/web/config",
  "/api/experiments", "unmatched"]);
const NOT_METRICS = new Set(["fit_seconds", "eval_seconds", "tuning_seconds", "n_evaluated", "unreachable_targets", "sampled"]);
const SERVED = "pipeline";

const history = [];
let shownVersion = null;
let chosenK = null;

function tiles(entries) {
  return h("dl", { class: "tiles" }, entries.map(([label, value, id]) => h("div", { class: "tile", ...(id ? { id } : {}) },
    h("dt", { text: label }), h("dd", { text: value }))));
}

function table(caption, head, rows, numeric = () => true) {
  return h("table", {}, h("caption", { class: "sr-only", text: caption }),
    h("thead", {}, h("tr", {}, head.map((c, i) => h("th", { scope: "col", class: i && numeric(i) ? "num" : "", text: c })))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c, i) => (i ? h("td", { class: numeric(i) ? "num" : "", text: c })
      : h("th", { scope: "row", text: c })))))));
}

// ---- live ------------------------------------------------------------------------------------------------

function renderLive(stats) {
  const t = stats.traffic;
  const api = Object.entries(t.routes).filter(([r]) => !UI_ROUTES.has(r));
  const apiRps = api.reduce((s, [, v]) => s + v.requests_per_s, 0);
  const busiest = api.sort((a, b) => b[1].requests_per_s - a[1].requests_per_s)[0];
  history.push({ t: Date.now(), rps: apiRps, p95: busiest ? busiest[1].p95_ms : 0, epm: t.events_per_min });
  while (history.length > 120) history.shift();
  const body = clear(document.getElementById("live-body"));
  body.append(tiles([
    ["API requests/s", fmt(apiRps), "tile-rps"],
    ["p50 latency", busiest ? `${fmt(busiest[1].p50_ms)} ms` : "–", "tile-p50"],
    ["p95 latency", busiest ? `${fmt(busiest[1].p95_ms)} ms` : "–", "tile-p95"],
    ["p99 latency", busiest ? `${fmt(busiest[1].p99_ms)} ms` : "–", "tile-p99"],
    ["events/min", fmt(t.events_per_min, 1), "tile-events"],
    ["errors (5xx)", String(t.errors), "tile-errors"],
    ["all requests/s", fmt(t.requests_per_s)],
    ["uptime", `${fmt(t.uptime_s / 60, 1)} min`],
  ]));
  body.append(h("p", { class: "muted small", text: `Latency of the busiest API route${busiest ? ` (${busiest[0]})` : ""}. `
    + `Worker ${t.process} of ${stats.workers}; live state: ${stats.state}. "API" leaves out pages, files and this dashboard's polling.` }));
  body.append(h("div", { class: "charts" },
    lineChart("API requests per second", history.map((p) => ({ t: p.t, v: p.rps })), { unit: "req/s", id: "chart-rps" }),
    lineChart("p95 latency, busiest route (ms)", history.map((p) => ({ t: p.t, v: p.p95 })), { unit: "ms", id: "chart-p95" }),
    lineChart("Events per minute", history.map((p) => ({ t: p.t, v: p.epm })), { unit: "events/min", id: "chart-events" })));
  const rows = Object.entries(t.routes).sort((a, b) => b[1].requests_per_s - a[1].requests_per_s)
    .map(([r, v]) => [r, fmt(v.requests_per_s), fmt(v.p50_ms), fmt(v.p95_ms), fmt(v.p99_ms), String(v.errors), String(v.client_errors)]);
  body.append(h("h3", { text: "Per route" }), rows.length
    ? table("Requests per route in the last minute", ["route", "req/s", "p50 ms", "p95 ms", "p99 ms", "5xx", "4xx"], rows)
    : h("p", { class: "muted", text: "No requests in the last minute." }));
}

// ---- offline evaluation -----------------------------------------------------------------------------------

function metricNames(report) {
  const names = new Set();
  for (const m of Object.values(report.models)) {
    for (const [k, v] of Object.entries(m)) if (typeof v === "number" && !NOT_METRICS.has(k)) names.add(k);
  }
  return [...names];
}

function renderEvaluation(report) {
  const body = clear(document.getElementById("eval-body"));
  if (!report || !report.models || !Object.keys(report.models).length) {
    body.append(h("p", { id: "no-report", text: "This bundle has no offline report. `aisle demo` writes one; or attach "
      + "one with Bundle.write_report after `aisle evaluate`." }));
    return;
  }
  const models = Object.keys(report.models);
  const names = metricNames(report);
  const ks = report.ks?.length ? report.ks : [...new Set(names.filter((n) => n.includes("@")).map((n) => Number(n.split("@")[1])))];
  if (chosenK === null || !ks.includes(chosenK)) chosenK = ks[0] ?? null;
  const atK = names.filter((n) => n.endsWith(`@${chosenK}`));
  const plain = names.filter((n) => !n.includes("@"));
  const shown = [...atK, ...plain];
  const ranking = report.ranking === "full" ? "full ranking over every item" : report.ranking;
  body.append(h("p", { class: "muted small", text: `${report.dataset} · protocol ${report.protocol} · ${ranking} · `
    + `${fmt(report.n_users)} users, ${fmt(report.n_items)} items · models tuned on validation targets, scored on test targets. `
    + `Highlighted: ${models.includes(SERVED) ? "the served pipeline" : "none"}.` }));
  const sel = h("select", { id: "cutoff", onchange: (e) => { chosenK = Number(e.target.value); renderEvaluation(report); } },
    ks.map((k) => h("option", { value: k, selected: k === chosenK, text: `@${k}` })));
  body.append(h("div", { class: "controls" }, h("label", { for: "cutoff", text: "Cut-off K" }), sel));
  const charts = h("div", { class: "charts", id: "eval-charts" });
  for (const name of shown) {
    const bars = models.map((m) => ({ label: m, value: report.models[m][name] ?? 0, highlight: m === SERVED }));
    charts.append(barChart(name, bars, { id: `chart-${name.replace(/[^A-Za-z0-9]/g, "_")}` }));
  }
  charts.append(barChart("Seconds to fit", models.map((m) => ({ label: m, value: report.models[m].fit_seconds ?? 0,
    highlight: m === SERVED })), { format: (v) => `${fmt(v)} s` }));
  body.append(charts);
  body.append(h("h3", { text: `All models at @${chosenK}` }),
    table("Offline metrics per model", ["model", ...shown], models.map((m) => [m, ...shown.map((n) => fmt(report.models[m][n], 4))])));
}

// ---- bundle, catalog, events --------------------------------------------------------------------------------

function renderBundle(stats) {
  const body = clear(document.getElementById("bundle-body"));
  const b = stats.bundle;
  if (!b) { body.append(h("p", { role: "alert", text: "No bundle is loaded (see /ready)." })); return; }
  const kv = [["version", b.version], ["path", b.path], ["created", b.created_at], ["data fingerprint", b.data_fingerprint],
    ["built with Aisle", b.aisle], ["loaded", new Date(b.loaded_at * 1000).toLocaleString()],
    ["parts", (b.parts || []).join(", ")], ["ranker", b.metrics?.pipeline?.ranker ?? "–"]];
  body.append(h("dl", { class: "kv", id: "bundle-info" }, kv.map(([k, v]) => [h("dt", { text: k }), h("dd", { text: v ?? "–" })])));
  const parts = Object.entries(b.metrics?.parts || {}).filter(([, v]) => typeof v.seconds === "number");
  const sel = b.metrics?.pipeline?.selection;
  const charts = h("div", { class: "charts" });
  if (parts.length) charts.append(barChart("Build time per part (s)", parts.map(([k, v]) => ({ label: k, value: v.seconds })), { format: (v) => `${fmt(v, 1)} s` }));
  if (sel) {
    charts.append(barChart("Ranker choice: validation NDCG@10", Object.entries(sel).map(([k, v]) => ({ label: k, value: v,
      highlight: k === b.metrics.pipeline.ranker })), { id: "chart-selection" }));
  }
  if (charts.childElementCount) body.append(charts);
}

function renderOverview(o, stats) {
  const body = clear(document.getElementById("catalog-body"));
  const c = o.catalog;
  const live = stats?.catalog || {};
  body.append(tiles([
    ["items", fmt(c.items)], ["available", fmt(c.available)], ["brands", fmt(c.brands)], ["categories", fmt(c.categories)],
    ["known users", fmt(c.users)], ["median price", c.price ? `$${fmt(c.price.median)}` : "–"],
    ["upserted since load", fmt(live.upserted ?? 0)], ["events", fmt(o.events.events ?? 0), "tile-store-events"],
  ]));
  const e = o.events;
  const where = e.source === "store" ? `the store ${e.path}` : `the bundle (${e.note})`;
  body.append(h("p", { class: "muted small", text: e.error ? `Events from ${where} could not be read: ${e.error}`
    : `Events from ${where}${e.first_event ? `, ${e.first_event.slice(0, 10)} → ${e.last_event.slice(0, 10)}` : ""}.` }));
  const charts = h("div", { class: "charts" });
  if (e.events_by_type) {
    charts.append(barChart("Events by type", Object.entries(e.events_by_type).map(([k, v]) => ({ label: k, value: v })),
      { format: (v) => fmt(v, 0), id: "chart-event-types" }));
  }
  charts.append(barChart("Items per category (top)", c.top_categories.map((x) => ({ label: x.value, value: x.count })),
    { format: (v) => fmt(v, 0), id: "chart-categories" }));
  charts.append(barChart("Items per brand (top)", c.top_brands.map((x) => ({ label: x.value, value: x.count })),
    { format: (v) => fmt(v, 0) }));
  body.append(charts);
}

// ---- polling ---------------------------------------------------------------------------------------------

let lastStats = null;

async function poll() {
  try {
    const stats = await get("/api/stats");
    lastStats = stats;
    renderLive(stats);
    const version = stats.bundle?.version ?? null;
    if (version !== shownVersion) {
      shownVersion = version;
      renderBundle(stats);
      renderEvaluation(stats.offline_report);
    }
    document.getElementById("updated").textContent = `Updated ${new Date().toLocaleTimeString()} · model ${version ?? "none"}`;
    document.getElementById("dash").dataset.ready = "1";
  } catch (e) {
    document.getElementById("updated").textContent = `Could not reach the API: ${e.message}`;
  }
}

async function pollOverview() {
  try {
    renderOverview(await get("/api/web/overview"), lastStats);
  } catch (e) {
    clear(document.getElementById("catalog-body")).append(h("p", { role: "alert", text: `Not available: ${e.message}` }));
  }
}

await poll();
startExperimentPanel();
await pollOverview();
document.getElementById("dash").dataset.overview = "1";
setInterval(poll, POLL_MS);
setInterval(pollOverview, OVERVIEW_MS);
