// SVG charts drawn by hand: horizontal bars (one value per label) and a time line. Each chart is a <figure>
// whose <svg role="img"> carries a text summary, so a screen reader gets the numbers too.

import { fmt, h } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function figure(title, svg, id) {
  return h("figure", { class: "chart", ...(id ? { id } : {}) }, h("figcaption", { text: title }), svg);
}

// bars: [{label, value, highlight}]; `format` turns a value into its label.
export function barChart(title, bars, { format = (v) => fmt(v, 3), width = 360, id } = {}) {
  const rowH = 22;
  const labelW = Math.min(150, Math.max(60, ...bars.map((b) => String(b.label).length * 6.6)));
  const valueW = 58;
  const height = Math.max(1, bars.length) * rowH + 8;
  const max = Math.max(...bars.map((b) => b.value || 0), 1e-12);
  const plotW = width - labelW - valueW;
  const summary = `${title}: ${bars.map((b) => `${b.label} ${format(b.value)}`).join(", ")}`;
  const svg = s("svg", { class: "chart bars", viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img",
    "aria-label": summary, preserveAspectRatio: "xMinYMin meet" });
  svg.append(s("title", {}, summary));
  bars.forEach((b, i) => {
    const y = 4 + i * rowH;
    const w = Math.max(1, ((b.value || 0) / max) * plotW);
    const label = String(b.label);
    svg.append(s("text", { x: labelW - 6, y: y + 14, "text-anchor": "end" }, label.length > 24 ? `${label.slice(0, 23)}…` : label));
    const bar = s("rect", { class: `bar${b.highlight ? " hl" : ""}`, x: labelW, y: y + 3, width: w, height: rowH - 7, rx: 3 });
    bar.append(s("title", {}, `${label}: ${format(b.value)}`));
    svg.append(bar);
    svg.append(s("text", { x: labelW + w + 4, y: y + 14 }, format(b.value)));
  });
  svg.append(s("line", { class: "axis", x1: labelW, x2: labelW, y1: 2, y2: height - 2 }));
  return figure(title, svg, id);
}

// points: [{t (ms), v}]; draws the last `span_s` seconds.
export function lineChart(title, points, { unit = "", width = 360, height = 120, id, spanS = 120 } = {}) {
  const pad = { l: 40, r: 8, t: 8, b: 18 };
  const now = points.length ? points.at(-1).t : Date.now();
  const t0 = now - spanS * 1000;
  const shown = points.filter((p) => p.t >= t0 && Number.isFinite(p.v));
  const max = Math.max(...shown.map((p) => p.v), 1e-9) * 1.15;
  const x = (t) => pad.l + ((t - t0) / (spanS * 1000)) * (width - pad.l - pad.r);
  const y = (v) => height - pad.b - (v / max) * (height - pad.t - pad.b);
  const last = shown.at(-1);
  const summary = `${title}: ${last ? `${fmt(last.v)} ${unit} now` : "no data yet"}, highest ${fmt(max / 1.15)} ${unit} in the last ${spanS} s`;
  const svg = s("svg", { class: "chart line-chart", viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img",
    "aria-label": summary });
  svg.append(s("title", {}, summary));
  svg.append(s("line", { class: "axis", x1: pad.l, x2: width - pad.r, y1: height - pad.b, y2: height - pad.b }));
  svg.append(s("line", { class: "axis", x1: pad.l, x2: pad.l, y1: pad.t, y2: height - pad.b }));
  svg.append(s("text", { x: pad.l - 4, y: pad.t + 8, "text-anchor": "end" }, fmt(max / 1.15)));
  svg.append(s("text", { x: pad.l - 4, y: height - pad.b, "text-anchor": "end" }, "0"));
  svg.append(s("text", { x: pad.l, y: height - 4 }, `-${spanS}s`));
  svg.append(s("text", { x: width - pad.r, y: height - 4, "text-anchor": "end" }, "now"));
  if (shown.length > 1) {
    const d = shown.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
    svg.append(s("path", { class: "area", d: `${d} L${x(last.t).toFixed(1)},${y(0)} L${x(shown[0].t).toFixed(1)},${y(0)} Z` }));
    svg.append(s("path", { class: "line", d }));
  }
  return figure(title, svg, id);
}
