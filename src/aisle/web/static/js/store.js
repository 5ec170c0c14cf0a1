// The storefront: header (search with suggestions, shopper switcher, cart), a hash router, the pages.

import { announce, clear, h } from "./dom.js";
import { apiKey, cart, get, setApiKey, setShopper, shopper, track } from "./api.js";
import { openItem } from "./cards.js";
import { combobox } from "./suggest.js";
import { cartPage, home, product, search } from "./pages.js";

const main = document.getElementById("main");
let renderSeq = 0;
let firstRender = true;

function route() {
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query || "");
  if (path.startsWith("/item/")) return ["product", () => product(decodeURIComponent(path.slice(6)))];
  if (path === "/search") return ["search", () => search(params)];
  if (path === "/cart") return ["cart", () => cartPage()];
  return ["home", () => home()];
}

async function render() {
  const mine = ++renderSeq;
  const [name, page] = route();
  main.setAttribute("aria-busy", "true");
  main.dataset.page = name;
  delete main.dataset.ready;
  let out;
  try {
    out = await page();
  } catch (e) {
    out = { view: h("div", { role: "alert" }, h("h1", { tabindex: "-1", text: "Something went wrong" }),
      h("p", { text: e.message }), h("p", {}, h("a", { href: "#/", text: "Back to the store" }))), title: "Error" };
  }
  if (mine !== renderSeq) return; // a newer navigation won
  main.replaceChildren(out.view);
  document.title = out.title;
  main.removeAttribute("aria-busy");
  main.dataset.ready = name;
  // the address rendered (read now: a search page rewrites its own to name the step), so a script or a test that
  // just changed the address waits for it: until the hashchange starts the next render the old page reads ready
  main.dataset.route = location.hash;
  syncSearchBox();
  if (!firstRender) {
    main.querySelector("h1")?.focus();
    window.scrollTo(0, 0);
  }
  firstRender = false;
}

function syncSearchBox() {
  const input = document.getElementById("q");
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  if (path === "/search") input.value = new URLSearchParams(query || "").get("q") || "";
}

function goSearch(q) {
  const p = new URLSearchParams({ q, turn: Date.now().toString(36) });  // a new turn, even when q repeats
  track("search", null, { query: q }).catch(() => {});
  location.hash = `#/search?${p}`;
}

function setupSearch() {
  const form = document.getElementById("search-form");
  const input = document.getElementById("q");
  const box = combobox(input, document.getElementById("suggestions"), (s) => {
    if (s.kind === "item") openItem(s.item_id);
    else if (s.kind === "category") location.hash = `#/search?${new URLSearchParams({ category: s.text })}`;
    else if (s.kind === "brand") location.hash = `#/search?${new URLSearchParams({ brand: s.text })}`;
    else { input.value = s.text; goSearch(s.text); }
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    box.close();
    const q = input.value.trim();
    if (q) goSearch(q);
  });
}

async function setupShopper() {
  const sel = document.getElementById("user");
  const who = shopper();
  const anonId = who.known ? localStorage.getItem("aisle.anon") : who.id;
  clear(sel);
  sel.append(h("option", { value: "anon", selected: !who.known, text: `Anonymous shopper${anonId ? ` (${anonId})` : ""}` }),
    h("option", { value: "new", text: "New anonymous shopper" }));
  const group = h("optgroup", { label: "Known shoppers" });
  sel.append(group);
  try {
    const { users } = await get("/api/web/users", { k: 12 });
    for (const u of users) {
      group.append(h("option", { value: `u:${u.user_id}`, selected: who.known && who.id === u.user_id,
        text: `${u.user_id} · ${u.events} events${u.top_category ? ` · ${u.top_category}` : ""}` }));
    }
    if (who.known && !users.some((u) => u.user_id === who.id)) {
      group.append(h("option", { value: `u:${who.id}`, selected: true, text: who.id }));
    }
  } catch { /* the switcher still offers anonymous shoppers */ }
  sel.onchange = () => {
    const v = sel.value;
    const s = v.startsWith("u:") ? setShopper(v.slice(2)) : setShopper(null, { renew: v === "new" });
    announce(`Now shopping as ${s.known ? s.id : "an anonymous shopper"}.`);
    setupShopper();
    updateCartCount();
    render();
  };
}

function updateCartCount() {
  const n = cart().length;
  const el = document.getElementById("cart-count");
  el.textContent = String(n);
  document.getElementById("cart-link").setAttribute("aria-label", `Cart, ${n} item${n === 1 ? "" : "s"}`);
}

async function setupChrome() {
  const footer = document.getElementById("footer-info");
  try {
    const cfg = await get("/api/web/config");
    const nav = document.getElementById("categories");
    for (const c of cfg.categories || []) {
      nav.append(h("li", {}, h("a", { href: `#/search?${new URLSearchParams({ category: c })}`, text: c })));
    }
    footer.append(h("span", { text: `Model ${cfg.model_version || "not loaded"}` }));
    if (cfg.write_key_required) {
      const input = h("input", { type: "password", id: "api-key", value: apiKey(), autocomplete: "off" });
      footer.append(h("form", { class: "controls", onsubmit: (e) => { e.preventDefault(); setApiKey(input.value.trim()); announce("API key saved in this browser."); } },
        h("label", { for: "api-key", text: "API key for events" }), input, h("button", { type: "submit", class: "secondary", text: "Save" })));
    }
  } catch (e) {
    footer.append(h("span", { role: "alert", text: `The API is not ready: ${e.message}` }));
  }
}

document.addEventListener("aisle:cart", updateCartCount);
window.addEventListener("hashchange", render);
window.addEventListener("storage", updateCartCount);
setupSearch();
setupShopper();
setupChrome();
updateCartCount();
render();
