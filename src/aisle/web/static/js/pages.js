// The storefront's pages. Each renders into a fresh container and returns it with a page title.

import { announce, h, money } from "./dom.js";
import { cart, get, saveCart, shopper, track, viewer } from "./api.js";
import { fromList } from "./attribution.js";
import { card, row, thumb } from "./cards.js";
import { conversationalSearch, refinementBanner, shopperRows } from "./shopper.js";

const REC_K = 12;

// Which recommendations are new since this shopper last saw the list (kept per shopper and list).
function freshness(listKey, items) {
  const key = `aisle.seen.${shopper().id}.${listKey}`;
  let prev = null;
  try { prev = JSON.parse(localStorage.getItem(key)); } catch { prev = null; }
  const ids = items.map((i) => i.item_id);
  localStorage.setItem(key, JSON.stringify(ids));
  if (!Array.isArray(prev)) return new Set();
  const before = new Set(prev);
  return new Set(ids.filter((i) => !before.has(i)));
}

function recNote(r, fresh) {
  const parts = [];
  if (r.history_length) {
    parts.push(`Based on ${r.history_length} events of yours` + (r.live_events ? `, ${r.live_events} from this visit` : ""));
  } else {
    parts.push("You are new here: these are popular now. Click, add to cart or buy and this list follows you.");
  }
  if (fresh.size) parts.push(`${fresh.size} new pick${fresh.size > 1 ? "s" : ""} since you last looked`);
  return parts.join(" · ");
}

async function recommendedRow(id, title, params = {}) {
  const who = shopper();
  const r = await get(`/users/${encodeURIComponent(who.id)}/recommendations`, viewer({ k: REC_K, ...params }, { user: false }));
  const fresh = freshness(id, r.items);
  const section = row(id, title, fromList(r), { note: recNote(r, fresh), fresh });
  section.dataset.modelVersion = r.model_version;
  section.dataset.requestId = r.request_id;
  if (r.arm) section.dataset.arm = r.arm;
  return section;
}

export async function home() {
  const who = shopper();
  const [recs, trend, own] = await Promise.all([
    recommendedRow("recommended", who.known ? `Recommended for ${who.id}` : "Recommended for you"),
    get("/trending", viewer({ k: 2 * REC_K })),
    shopperRows(),
  ]);
  const shown = new Set([...recs.querySelectorAll("li.card")].map((li) => li.dataset.itemId));
  const trending = fromList(trend).filter((i) => !shown.has(i.item_id)).slice(0, REC_K);
  const view = h("div", {}, h("h1", { tabindex: "-1", text: who.known ? `Welcome back, ${who.id}` : "Welcome to the Aisle store" }),
    recs, ...own, row("trending", "Trending now", trending, { note: "What shoppers are buying and viewing right now (beyond the picks above)." }));
  return { view, title: "Aisle store" };
}

// ---- search ----------------------------------------------------------------------------------------------

function searchHash(params) {
  const p = new URLSearchParams();
  for (const [k, v] of params) if (v !== "" && v !== null && v !== undefined) p.append(k, v);
  return `#/search?${p}`;
}

function withParam(params, key, values) {
  const p = new URLSearchParams(params);
  p.delete(key);
  p.delete("page");
  for (const v of values) p.append(key, v);
  return p;
}

function facetGroup(params, key, legend, facet) {
  const chosen = new Set(params.getAll(key));
  const values = new Map(facet.map((f) => [f.value, f.count]));
  for (const c of chosen) if (!values.has(c)) values.set(c, 0);
  const fs = h("fieldset", {}, h("legend", { text: legend }));
  let n = 0;
  for (const [value, count] of values) {
    const id = `f-${key}-${n++}`;
    const box = h("input", { type: "checkbox", id, name: key, value, checked: chosen.has(value),
      onchange: (e) => {
        const next = new Set(chosen);
        if (e.target.checked) next.add(value); else next.delete(value);
        location.hash = searchHash(withParam(params, key, [...next]));
      } });
    fs.append(h("label", { for: id }, box, h("span", { text: value }), h("span", { class: "count", text: count || "" })));
  }
  return fs;
}

function priceGroup(params, buckets) {
  const current = params.get("price") || "";
  const fs = h("fieldset", {}, h("legend", { text: "Price" }));
  const options = [{ label: "Any price", value: "" }, ...buckets.map((b) => ({
    label: b.label, count: b.count, value: `${b.min}-${b.max ?? ""}` }))];
  if (current && !options.some((o) => o.value === current)) options.push({ label: current, value: current });
  options.forEach((o, n) => {
    const id = `f-price-${n}`;
    fs.append(h("label", { for: id }, h("input", { type: "radio", id, name: "price", value: o.value,
      checked: o.value === current, onchange: () => { location.hash = searchHash(withParam(params, "price", o.value ? [o.value] : [])); } }),
    h("span", { text: o.label }), h("span", { class: "count", text: o.count ?? "" })));
  });
  return fs;
}

function understood(res) {
  const f = res.query?.filters || {};
  const chips = [];
  for (const b of f.brands || []) chips.push(`brand: ${b}`);
  for (const c of f.categories || []) chips.push(`category: ${c}`);
  if (f.price_min != null || f.price_max != null) {
    chips.push(`price: ${f.price_min != null ? money(f.price_min) : ""}–${f.price_max != null ? money(f.price_max) : ""}`);
  }
  for (const col of f.colors || []) chips.push(`colour: ${col}`);
  return chips.length ? h("div", { class: "chips", "aria-label": "Understood from your query" },
    h("span", { class: "muted small", text: "Understood:" }), chips.map((c) => h("span", { class: "chip", text: c }))) : null;
}

export async function search(params) {
  const q = params.get("q") || "";
  const page = Math.max(1, Number(params.get("page") || 1));
  const sort = params.get("sort") || "relevance";
  const [lo, hi] = (params.get("price") || "-").split("-");
  // Browsing a category or brand (no words typed) sends an empty query: the engine lists every item the
  // filters let through, most popular (or best fitting this shopper) first.
  // every search is a turn (or a step shown again) of this tab's search conversation: "cheaper" refines
  const res = await conversationalSearch(params, { category: params.getAll("category"), brand: params.getAll("brand"),
    price_min: lo, price_max: hi, sort, page, page_size: 24, ...viewer() });
  const searched = res.refinement?.constraints?.like ? "" : (res.refinement?.constraints?.query ?? q);  // what a refinement refines
  const label = res.refinement?.constraints?.like ? "More like your pick" : searched ? `Results for “${searched}”` : (params.getAll("category")[0] || params.getAll("brand")[0] || "All products");
  const view = h("div", {}, h("h1", { tabindex: "-1", text: label }));
  if (q && res.did_you_mean && res.did_you_mean !== q) {
    const p = new URLSearchParams(params);
    p.set("q", res.did_you_mean);
    p.delete("page");
    p.delete("step");
    p.set("turn", Date.now().toString(36));
    view.append(h("p", { class: "notice", id: "did-you-mean" }, "Did you mean ",
      h("a", { href: searchHash(p), text: res.did_you_mean }), "? ",
      h("span", { class: "muted", text: `Showing results for “${res.did_you_mean}”.` })));
  }
  if (res.relaxed?.length) {
    view.append(h("p", { class: "notice", id: "relaxed", text: `No exact matches, so we relaxed: ${res.relaxed.join(", ")}.` }));
  }
  view.append(refinementBanner(res, params) || "", understood(res) || "");
  const sortSel = h("select", { id: "sort", onchange: (e) => {
    const p = new URLSearchParams(params); p.set("sort", e.target.value); p.delete("page"); location.hash = searchHash(p); } },
  [["relevance", "Relevance"], ["popularity", "Popularity"], ["price_asc", "Price: low to high"], ["price_desc", "Price: high to low"]]
    .map(([v, t]) => h("option", { value: v, selected: v === sort, text: t })));
  const pages = Math.max(1, Math.ceil(res.total / res.page_size));
  const toolbar = h("div", { class: "toolbar" },
    h("p", { id: "result-count", role: "status", text: `${res.total.toLocaleString("en-US")} result${res.total === 1 ? "" : "s"}` + (pages > 1 ? ` · page ${page} of ${pages}` : "") }),
    h("div", {}, h("label", { for: "sort", text: "Sort by " }), sortSel));
  const wide = matchMedia("(min-width: 760px)").matches;
  const facets = h("aside", { class: "facets", "aria-label": "Filters" }, h("details", { open: wide },
    h("summary", { text: "Filters" }),
    facetGroup(params, "category", "Category", res.facets?.category || []),
    facetGroup(params, "brand", "Brand", res.facets?.brand || []),
    priceGroup(params, res.facets?.price || [])));
  const hits = fromList(res);  // each with its explanation (why it is here) and its list's request id
  const results = h("section", { "aria-labelledby": "results-title" }, h("h2", { id: "results-title", class: "sr-only", text: "Results" }),
    toolbar, hits.length ? h("ul", { class: "grid", id: "results" }, hits.map((it) => card(it)))
      : h("p", { class: "empty", text: "No products match. Try fewer words or remove a filter." }));
  if (pages > 1) {
    const go = (n) => { const p = new URLSearchParams(params); p.set("page", n); return searchHash(p); };
    results.append(h("nav", { class: "pager", "aria-label": "Pages" },
      page > 1 ? h("a", { class: "button secondary", href: go(page - 1), rel: "prev", text: "‹ Previous" }) : null,
      h("span", { text: `Page ${page} of ${pages}` }),
      page < pages ? h("a", { class: "button secondary", href: go(page + 1), rel: "next", text: "Next ›" }) : null));
  }
  view.append(h("div", { class: "search-layout" }, facets, results));
  return { view, title: `${label} · Aisle store` };
}

// ---- product page --------------------------------------------------------------------------------------

function addToCart(item) {
  const items = cart();
  if (!items.some((i) => i.item_id === item.item_id)) items.push({ item_id: item.item_id, title: item.title,
    price: item.price, currency: item.currency, category: item.category, brand: item.brand });
  saveCart(items);
}

async function act(kind, item, after) {
  try {
    await track(kind, item.item_id, kind === "purchase" ? { value: 1 } : {});
  } catch (e) {
    announce(`Could not record that: ${e.message}`);
    return;
  }
  if (kind === "add_to_cart") addToCart(item);
  announce(kind === "purchase" ? `Thank you! You bought ${item.title}.` : `Added ${item.title} to your cart.`);
  await after();
}

export async function product(itemId) {
  try {
    await track("view", itemId);
  } catch (e) {
    announce(`Could not record the view: ${e.message}`);
  }
  const id = encodeURIComponent(itemId);
  let item;
  try {
    item = await get(`/api/web/items/${id}`);
  } catch (e) {
    if (e.status !== 404) throw e;
    return { view: h("div", {}, h("h1", { tabindex: "-1", text: "Product not found" }),
      h("p", {}, "This product is not in the catalog. ", h("a", { href: "#/", text: "Back to the store" }))), title: "Not found" };
  }
  const [similar, together, recs] = await Promise.all([
    get(`/items/${id}/similar`, viewer({ k: 8 })), get(`/items/${id}/bought-together`, viewer({ k: 6 })),
    recommendedRow("for-you", "Recommended for you", { context_item: itemId })]);
  const recsSlot = h("div", {}, recs);
  const refresh = async () => { recsSlot.replaceChildren(await recommendedRow("for-you", "Recommended for you", { context_item: itemId })); };
  const path = item.category || [];
  const crumbs = h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("ol", {},
    h("li", {}, h("a", { href: "#/", text: "Home" })),
    path.map((c) => h("li", {}, h("a", { href: searchHash([["category", c]]), text: c })))));
  const attrs = Object.entries(item.attributes || {});
  const info = h("div", {},
    crumbs,
    h("h1", { tabindex: "-1", id: "product-title", text: item.title }),
    item.brand ? h("p", { class: "card-brand" }, "by ", h("a", { href: searchHash([["brand", item.brand]]), text: item.brand })) : null,
    h("p", { class: "price", text: money(item.price, item.currency) }),
    item.available ? null : h("p", { class: "oos", text: "Out of stock" }),
    h("div", { class: "actions" },
      h("button", { type: "button", id: "add-to-cart", disabled: !item.available, onclick: () => act("add_to_cart", item, refresh),
        text: "Add to cart" }),
      h("button", { type: "button", class: "secondary", id: "buy-now", disabled: !item.available,
        onclick: () => act("purchase", item, refresh), text: "Buy now" })),
    item.description ? h("p", { text: item.description }) : null,
    attrs.length ? h("dl", { class: "attrs" }, attrs.map(([k, v]) => [h("dt", { text: k.replace(/_/g, " ") }), h("dd", { text: String(v) })])) : null);
  const view = h("div", {},
    h("article", { class: "product", "aria-labelledby": "product-title" }, thumb(item, true), info),
    row("similar", "Similar items", fromList(similar), { note: "Close in description and in what shoppers viewed next." }),
    row("bought-together", "Frequently bought together", fromList(together),
      { note: "Bought in the same orders (association rules), then co-viewed items.", empty: "No items are bought with this one yet." }),
    recsSlot);
  return { view, title: `${item.title} · Aisle store` };
}

// ---- cart ------------------------------------------------------------------------------------------------

export async function cartPage() {
  const view = h("div", {}, h("h1", { tabindex: "-1", text: "Your cart" }));
  const items = cart();
  const redraw = async () => { const next = await cartPage(); view.replaceWith(next.view); next.view.querySelector("h1")?.focus(); };
  if (!items.length) {
    view.append(h("p", { class: "empty" }, "Your cart is empty. ", h("a", { href: "#/", text: "Keep shopping" })));
    view.append(await recommendedRow("recommended", "Recommended for you"));
    return { view, title: "Cart · Aisle store" };
  }
  const total = items.reduce((s, i) => s + (i.price || 0), 0);
  view.append(h("ul", { class: "cart-list" }, items.map((it) => h("li", {},
    h("a", { href: `#/item/${encodeURIComponent(it.item_id)}`, text: it.title }),
    h("span", { class: "price", text: money(it.price, it.currency) }),
    h("button", { type: "button", class: "secondary", "aria-label": `Remove ${it.title}`, text: "Remove",
      onclick: async () => {
        await track("remove_from_cart", it.item_id).catch((e) => announce(e.message));
        saveCart(cart().filter((x) => x.item_id !== it.item_id));
        announce(`Removed ${it.title}.`);
        await redraw();
      } })))));
  view.append(h("p", {}, h("strong", { text: `Total: ${money(total, items[0].currency)}` })));
  view.append(h("div", { class: "actions" }, h("button", { type: "button", id: "checkout", text: "Buy everything",
    onclick: async () => {
      try {
        await track("purchase", items.map((i) => i.item_id), { value: 1 });
      } catch (e) { announce(`Could not place the order: ${e.message}`); return; }
      saveCart([]);
      announce(`Thank you! You bought ${items.length} item${items.length > 1 ? "s" : ""}.`);
      const done = h("div", {}, h("h1", { tabindex: "-1", text: "Thank you for your order" }),
        h("p", { text: `${items.length} item${items.length > 1 ? "s" : ""}, ${money(total, items[0].currency)}.` }),
        await recommendedRow("recommended", "Recommended after your order"));
      view.replaceWith(done);
      done.querySelector("h1").focus();
    } })));
  const last = items.at(-1);
  const together = await get(`/items/${encodeURIComponent(last.item_id)}/bought-together`, viewer({ k: 6 }));
  const inCart = new Set(items.map((i) => i.item_id));
  view.append(row("bought-together", `Goes well with ${last.title}`, fromList(together).filter((i) => !inCart.has(i.item_id))));
  return { view, title: "Cart · Aisle store" };
}

