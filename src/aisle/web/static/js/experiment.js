// The dashboard's experiment panel: the A/B experiment in the server's settings and, per arm, what shoppers did
// with the lists it served (from /api/experiments: the store's impression log and events).

import { clear, fmt, h } from "./dom.js";
import { get } from "./api.js";
import { barChart } from "./charts.js";

const POLL_MS = 5000;
const METRICS = [["click_rate", "click rate", true], ["cart_rate", "add-to-cart rate", true],
  ["conversion", "conversion", true], ["revenue", "revenue / session", false]];

const pct = (v) => `${fmt(100 * v, 1)}%`;
const money = (v) => `$${fmt(v, 2)}`;

function servedBy(arm) {
  const parts = [arm.bundle ? `bundle ${arm.bundle}` : "the server's bundle"];
  const rules = Object.entries(arm.rules || {});
  if (rules.length) parts.push(`rules: ${rules.map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join(", ")}`);
  if (arm.model_version) parts.push(`model ${arm.model_version}`);
  return parts.join(" · ");
}

function cell(e, isRate) {
  const f = isRate ? pct : money;
  return `${f(e.value)} [${f(e.low)}, ${f(e.high)}]`;
}

function versus(c, isRate) {
  if (!c) return "control";
  const f = isRate ? pct : money;
  const lift = c.lift === null ? "" : ` (${c.lift >= 0 ? "+" : ""}${fmt(100 * c.lift, 1)}%)`;
  return `${c.diff >= 0 ? "+" : ""}${f(c.diff)}${lift}, p = ${fmt(c.p_value, 3)}${c.significant ? " *" : ""}`;
}

function render(body, data) {
  clear(body);
  if (!data.experiment) {
    body.append(h("p", { id: "no-experiment", text: "No experiment is running: add an [experiment] table with its arms to "
      + "the serve settings (see the README, \"A/B experiments\")." }));
    return;
  }
  const exp = data.experiment;
  const byArm = Object.fromEntries((data.report?.arms || []).map((a) => [a.arm, a]));
  const conf = data.report ? `${fmt(100 * data.report.confidence, 0)}%` : "";
  body.append(h("p", { class: "muted small", text: `Experiment “${exp.name}” · control: ${exp.control} · unit: shopper `
    + `session · ${conf} intervals · ${fmt(data.impressions ?? 0, 0)} impressions in the store.` }));
  body.append(h("dl", { class: "kv", id: "experiment-arms" }, exp.arms.map((a) => [h("dt", { text: `${a.name} (weight ${fmt(a.weight)})` }),
    h("dd", { text: servedBy(a) })])));
  const head = ["arm", "sessions", "impressions", ...METRICS.map(([, label]) => label)];
  const rows = exp.arms.map((a) => {
    const r = byArm[a.name];
    return h("tr", { id: `experiment-arm-${a.name}` }, h("th", { scope: "row", text: a.name }),
      h("td", { class: "num", text: r ? fmt(r.sessions, 0) : "0" }), h("td", { class: "num", text: r ? fmt(r.impressions, 0) : "0" }),
      METRICS.map(([key, , isRate]) => h("td", { class: "num" }, r ? [h("div", { text: cell(r.metrics[key], isRate) }),
        h("div", { class: "muted small", text: versus(r.vs_control?.[key], isRate) })] : "–")));
  });
  body.append(h("div", { class: "table-scroll" }, h("table", { id: "experiment-table" }, h("caption", { class: "sr-only", text: "Outcomes per experiment arm" }),
    h("thead", {}, h("tr", {}, head.map((c, i) => h("th", { scope: "col", class: i ? "num" : "", text: c })))),
    h("tbody", {}, rows))));
  const charts = h("div", { class: "charts" });
  for (const [key, label, isRate] of METRICS) {
    charts.append(barChart(label, exp.arms.map((a) => ({ label: a.name, value: byArm[a.name]?.metrics[key].value ?? 0,
      highlight: a.name === exp.control })), { format: isRate ? pct : money, id: `chart-experiment-${key}` }));
  }
  body.append(charts);
  const left = Object.entries(data.report?.counts || {}).filter(([, v]) => v);
  body.append(h("p", { class: "muted small", text: "Each cell: value [interval], then the difference against the control (lift) and its two-sided "
    + "p-value; * significant (not corrected for the number of metrics and arms)."
    + (left.length ? ` Left out: ${left.map(([k, v]) => `${k.replace(/_/g, " ")} ${fmt(v, 0)}`).join(", ")}.` : "") }));
}

export function startExperimentPanel(body = document.getElementById("experiment-body")) {
  const poll = async () => {
    try {
      render(body, await get("/api/experiments"));
      body.dataset.ready = "1";
    } catch (e) {
      clear(body).append(h("p", { role: "alert", text: `Not available: ${e.message}` }));
    }
  };
  poll();
  setInterval(poll, POLL_MS);
}
