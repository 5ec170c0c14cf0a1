// What the storefront shows every shopper of their own: "Buy it again", "Recently viewed", and the search
// conversation (each search box entry is a turn of this tab's search session; the server says how it read it).

import { h } from "./dom.js";
import { get, shopper } from "./api.js";
import { row } from "./cards.js";

const ROW_K = 8;

// "Buy it again" (only when something is due) and "Recently viewed", for the home page.
export async function shopperRows() {
  const id = encodeURIComponent(shopper().id);
  const [again, viewed] = await Promise.all([get(`/users/${id}/buy-again`, { k: ROW_K }).catch(() => ({ items: [] })),
    get(`/users/${id}/recently-viewed`, { k: ROW_K })]);
  return [
    again.items.length ? row("buy-again", "Buy it again", again.items,
      { note: "Things you buy regularly that are about due." }) : null,
    row("recently-viewed", "Recently viewed", viewed.items,
      { note: "Newest first.", showWhy: false, empty: "Products you look at will show up here." }),
  ].filter(Boolean);
}

// This tab's search conversation id (a new tab, or a new shopper, starts a new conversation).
function searchSession() {
  const key = `aisle.search.${shopper().id}`;
  let s = sessionStorage.getItem(key);
  if (!s) {
    s = `web-${shopper().id}-${Date.now().toString(36)}`;
    sessionStorage.setItem(key, s);
  }
  return s;
}

function withStep(params, step, query) {
  const p = new URLSearchParams(params);
  p.delete("turn");
  p.set("step", String(step));
  if (query !== undefined) p.set("q", query);
  return p;
}

// One search request of the conversation: a new turn when the search box was just used (`turn` in the hash), else
// the step on screen again (facets, sort, pages, reloads and the back button do not repeat a turn). The hash is
// then rewritten to name the step, so a reload shows it rather than applying "cheaper" once more.
export async function conversationalSearch(params, extra) {
  const session = searchSession();
  const stepParam = params.get("step");
  const turn = params.has("turn") || stepParam === null;
  const res = await get("/search", { ...extra, conversation: session, q: params.get("q") || "", step: turn ? undefined : stepParam });
  const ref = res.refinement;
  if (turn) history.replaceState(null, "", `#/search?${withStep(params, ref.step)}`);
  return res;
}

// "Showing blue coffee makers under $40 — Undo" above the results, when the search was refined.
export function refinementBanner(res, params) {
  const ref = res.refinement;
  if (!ref || !(ref.undo.available || ref.kind === "refine")) return null;
  const undo = h("button", { type: "button", class: "link-button", id: "refine-undo", disabled: !ref.undo.available,
    text: "Undo", onclick: async () => {
      const back = await get("/search", { conversation: searchSession(), undo: "true", page_size: 1 });
      location.hash = `#/search?${withStep(new URLSearchParams(), back.refinement.step, back.refinement.constraints.query)}`;
    } });
  const said = ref.kind === "refine" && ref.utterance ? h("span", { class: "muted", text: ` (you said “${ref.utterance}”)` }) : null;
  return h("p", { class: "notice", id: "refinement", role: "status", dataset: { kind: ref.kind } },
    h("span", { id: "understood", text: ref.understood.charAt(0).toUpperCase() + ref.understood.slice(1) }), said,
    " — ", undo,
    h("span", { class: "muted small hint", text: " Refine in the search box: “cheaper”, “in blue”, “without <brand>”, “more like the second one”." }));
}
