// The search box as an ARIA combobox: suggestions as you type, arrow keys to move, Enter to pick, Escape to close.

import { clear, h } from "./dom.js";
import { get } from "./api.js";

const KIND_LABEL = { category: "category", brand: "brand", item: "product", correction: "did you mean" };

export function combobox(input, list, onPick) {
  let items = [];
  let active = -1;
  let timer = 0;
  let seq = 0;

  const close = () => {
    clearTimeout(timer);
    seq += 1; // an answer still on its way must not reopen the list
    list.hidden = true;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
    active = -1;
  };
  const highlight = (n) => {
    active = n;
    [...list.children].forEach((li, i) => li.setAttribute("aria-selected", String(i === n)));
    if (n >= 0) {
      input.setAttribute("aria-activedescendant", list.children[n].id);
      list.children[n].scrollIntoView({ block: "nearest" });
    } else input.removeAttribute("aria-activedescendant");
  };
  const show = (suggestions) => {
    items = suggestions;
    clear(list);
    suggestions.forEach((s, n) => list.append(h("li", { id: `suggestion-${n}`, role: "option", "aria-selected": "false",
      onmousedown: (e) => e.preventDefault(), onclick: () => { close(); onPick(s); } },
    h("span", { text: s.text }), h("span", { class: "kind", text: KIND_LABEL[s.kind] || s.kind }))));
    if (suggestions.length) {
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
    } else close();
    active = -1;
  };

  input.addEventListener("input", () => {
    clearTimeout(timer);
    const q = input.value;
    if (!q.trim()) { close(); return; }
    timer = setTimeout(async () => {
      const mine = ++seq;
      try {
        const r = await get("/api/web/suggest", { q, k: 8 });
        if (mine === seq && input.value === q && document.activeElement === input) show(r.suggestions);
      } catch { close(); }
    }, 120);
  });
  input.addEventListener("keydown", (e) => {
    if (list.hidden) {
      if (e.key === "ArrowDown" && items.length && input.value.trim()) { show(items); highlight(0); e.preventDefault(); }
      return;
    }
    if (e.key === "ArrowDown") { highlight((active + 1) % items.length); e.preventDefault(); }
    else if (e.key === "ArrowUp") { highlight(active <= 0 ? items.length - 1 : active - 1); e.preventDefault(); }
    else if (e.key === "Escape") { close(); e.preventDefault(); }
    else if (e.key === "Enter" && active >= 0) { e.preventDefault(); const s = items[active]; close(); onPick(s); }
  });
  input.addEventListener("blur", () => setTimeout(close, 100));
  window.addEventListener("hashchange", close);
  return { close };
}
