// Product cards and rows of cards. A card is one link (one Tab stop); its explanation sits under it.

import { announce, h, hue, initials, money } from "./dom.js";
import { track } from "./api.js";
import { pickedFrom } from "./attribution.js";

export function thumb(item, big = false) {
  const cat = (item.category || []).at(-1) || item.brand || item.title;
  const c = hue(cat);
  return h("div", { class: "thumb", "aria-hidden": "true",
    style: `background: linear-gradient(135deg, hsl(${c} 55% 42%), hsl(${(c + 40) % 360} 60% 30%))` },
  big ? initials(item.title) : initials(cat));
}

// Follow a product link after telling the server about the click (so the next page already reacts to it).
export async function openItem(itemId, eventType = "click") {
  try {
    await track(eventType, itemId);
  } catch (e) {
    announce(`Could not record the ${eventType}: ${e.message}`);
  }
  location.hash = `#/item/${encodeURIComponent(itemId)}`;
}

export function card(item, { fresh = false, showWhy = true } = {}) {
  const link = h("a", { class: "card-link", href: `#/item/${encodeURIComponent(item.item_id)}`,
    dataset: { itemId: item.item_id },
    onclick: (e) => {
      if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
      e.preventDefault();
      pickedFrom(item.item_id, item.request_id); // the click and what follows are attributed to this list
      openItem(item.item_id);
    } },
  thumb(item),
  h("div", { class: "card-body" },
    h("span", { class: "card-title", text: item.title }),
    item.brand ? h("span", { class: "card-brand", text: item.brand }) : null,
    h("span", { class: "price", text: money(item.price, item.currency) }),
    item.available === false ? h("span", { class: "oos", text: "Out of stock" }) : null));
  const why = showWhy && item.explanation ? h("p", { class: "why", text: item.explanation.text,
    dataset: { type: item.explanation.type } }) : null;
  return h("li", { class: "card", dataset: { itemId: item.item_id, ...(item.request_id ? { requestId: item.request_id } : {}) } },
    fresh ? h("span", { class: "badge", text: "New for you" }) : null, link, why);
}

// A titled row of cards; `fresh` is the set of item ids to badge as new since the last visit.
export function row(id, title, items, { note = "", fresh = new Set(), showWhy = true, empty = "Nothing here yet." } = {}) {
  const heading = h("h2", { id: `${id}-title`, text: title });
  return h("section", { class: "row", id, "aria-labelledby": `${id}-title` },
    h("div", { class: "row-head" }, heading),
    note ? h("p", { class: "row-note", text: note }) : null,
    items.length
      ? h("ul", { class: "grid" }, items.map((it) => card(it, { fresh: fresh.has(it.item_id), showWhy })))
      : h("p", { class: "empty", text: empty }));
}

export function loadingRow(id, title) {
  return h("section", { class: "row", id, "aria-busy": "true" }, h("h2", { text: title }),
    h("p", { class: "muted", text: "Loading…" }));
}
