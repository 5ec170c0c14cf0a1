// The serving API from the browser: reads, the shopper's identity, event posts, the cart.

import { forgetPicks, requestFor } from "./attribution.js";

const KEY_STORE = "aisle.apiKey";

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.detail ? `${body.error || status}: ${typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)}` : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export async function get(path, params = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === "") continue;
    for (const one of Array.isArray(v) ? v : [v]) url.searchParams.append(k, one);
  }
  const r = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, body);
  return body;
}

// ---- who is shopping ------------------------------------------------------------------------------------

function anonymousId(renew = false) {
  let id = localStorage.getItem("aisle.anon");
  if (!id || renew) {
    const r = (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2)).replace(/-/g, "");
    id = `anon-${r.slice(0, 10)}`;
    localStorage.setItem("aisle.anon", id);
  }
  return id;
}

// The current shopper: {id, known}. Anonymous shoppers keep one id per browser until they ask for a new one.
export function shopper() {
  try {
    const s = JSON.parse(localStorage.getItem("aisle.shopper"));
    if (s && s.id) return s;
  } catch { /* a damaged entry is replaced */ }
  return setShopper(null);
}

// Switch to a known shopper (`id`), back to the anonymous one (null), or to a brand-new anonymous one.
export function setShopper(id, { renew = false } = {}) {
  const s = id ? { id, known: true } : { id: anonymousId(renew), known: false };
  localStorage.setItem("aisle.shopper", JSON.stringify(s));
  sessionStorage.removeItem("aisle.session");
  forgetPicks();
  return s;
}

// The visit: lists are requested with it (the impression log's session) and events posted with it.
export function sessionId() {
  let s = sessionStorage.getItem("aisle.session");
  if (!s) {
    s = `web-${Date.now().toString(36)}`;
    sessionStorage.setItem("aisle.session", s);
  }
  return s;
}

// The parameters that say who a list is for (the impression log records them; the experiment arm follows the
// shopper, or the visit for a route without a user).
export function viewer(params = {}, { user = true } = {}) {
  return { ...params, ...(user ? { user: shopper().id } : {}), session_id: sessionId() };
}

export function apiKey() { return localStorage.getItem(KEY_STORE) || ""; }
export function setApiKey(k) { if (k) localStorage.setItem(KEY_STORE, k); else localStorage.removeItem(KEY_STORE); }

// POST /events; resolves when the server has the events, so the next page's recommendations see them.
export async function track(eventType, itemId, extra = {}) {
  const who = shopper();
  const events = (Array.isArray(itemId) ? itemId : [itemId]).map((item) => ({
    user_id: who.id, event_type: eventType, session_id: sessionId(), ...(item ? { item_id: item } : {}),
    ...(requestFor(item) ? { request_id: requestFor(item) } : {}), ...extra,
  }));
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  if (apiKey()) headers["X-API-Key"] = apiKey();
  const r = await fetch("/events", { method: "POST", headers, body: JSON.stringify({ events }) });
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, body);
  document.dispatchEvent(new CustomEvent("aisle:tracked", { detail: { eventType, events: events.length } }));
  return body;
}

// ---- the cart (kept in the browser; the server sees add/remove/purchase events) ---------------------------

export function cart() {
  try { return JSON.parse(localStorage.getItem(`aisle.cart.${shopper().id}`)) || []; } catch { return []; }
}

export function saveCart(items) {
  localStorage.setItem(`aisle.cart.${shopper().id}`, JSON.stringify(items));
  document.dispatchEvent(new CustomEvent("aisle:cart"));
}
