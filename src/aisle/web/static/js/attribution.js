// Attribution: which served list a shopper's click, add to cart or purchase came from.
//
// Every list the API serves has a `request_id` (the impression log's key). A card remembers the id of the list it
// was shown in; clicking it records "this item came from that list" for the rest of the visit, so the click and
// the add to cart or purchase that follow on the product page or at checkout are posted with the same id, and
// the experiment report counts them for the arm that served the list.

const KEY = "aisle.from";
const KEEP = 200; // items remembered per visit (the oldest are forgotten first)

function load() {
  try { return JSON.parse(sessionStorage.getItem(KEY)) || {}; } catch { return {}; }
}

// The items of a list answer, each carrying the answer's request id (search answers list `hits`).
export function fromList(answer, items = answer.items ?? answer.hits ?? []) {
  return items.map((it) => ({ ...it, request_id: answer.request_id }));
}

// Remember that `itemId` was picked from the list `requestId` (no-op without one).
export function pickedFrom(itemId, requestId) {
  if (!itemId || !requestId) return;
  const from = load();
  delete from[itemId];
  from[itemId] = requestId;
  const keys = Object.keys(from);
  for (const k of keys.slice(0, Math.max(0, keys.length - KEEP))) delete from[k];
  sessionStorage.setItem(KEY, JSON.stringify(from));
}

// The request id of the list this item was last picked from in this visit, if any.
export function requestFor(itemId) {
  return itemId ? load()[itemId] : undefined;
}

// A new shopper or visit starts with nothing attributed.
export function forgetPicks() {
  sessionStorage.removeItem(KEY);
}
