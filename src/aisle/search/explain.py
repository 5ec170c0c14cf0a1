"""Why a search hit is there, in the same shape as a recommendation's explanation (`{"type", "text", ...}`).

A hit is in a result for one or more of these reasons, and its explanation names each that holds:

* **words**: query words found in its fields (title, brand, category, attributes, description), from the
  `matched` record the engine returns with every hit;
* **meaning**: the dense retriever found it close to the query (cosine `dense_similarity`), which is how a hit
  with none of the words gets in ("sneakers" -> running shoes);
* **understood filters**: what query understanding turned into a filter ("under $40", a brand, a colour), which
  every hit passes;
* **search memory**: shoppers chose it after a similar logged search (`memory_similarity`: how similar);
* **boosts**: the shopper's brand and category affinities that moved it up (personalised search only);
* **browse**: no words to match (a category page, "under $50"): popularity ordered it.

Why here and not in the engine: the engine's `matched` record is what ranking used; how it reads to a shopper
is presentation, shared by the API and the storefront.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aisle.query import fold
from aisle.search.text import analyze

_FIELD_NAMES = {"title": "title", "brand": "brand", "category": "category", "attributes": "details",
                "description": "description"}


def filter_phrases(filters: Mapping[str, Any]) -> list[str]:
    """The applied filters (`Filters.to_json()`), as a shopper reads them: "under $40", "brand Acme", "blue"."""
    out: list[str] = []
    lo, hi = filters.get("price_min"), filters.get("price_max")
    if lo is not None and hi is not None:
        out.append(f"${lo:g}-${hi:g}")
    elif hi is not None:
        out.append(f"under ${hi:g}")
    elif lo is not None:
        out.append(f"over ${lo:g}")
    out += [f"brand {b}" for b in filters.get("brands", [])]
    out += [f"not {b}" for b in filters.get("exclude_brands", [])]
    out += list(filters.get("categories", []))
    for key, values in filters.get("attributes", {}).items():
        out += [f"{v}" if key == "color" else f"{key.replace('_', ' ')} {v}" for v in values]
    if filters.get("available"):
        out.append("in stock")
    return out


def explain_hit(hit: Mapping[str, Any], *, query: str, filters: Mapping[str, Any],
                affinity: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, Any]:
    """The explanation of one hit of `SearchResult.to_json()["hits"]` (enriched with its card's `category`);
    `query` is the text searched (the corrected words), whose words are named rather than their index stems."""
    matched = hit.get("matched") or {}
    fields = [_FIELD_NAMES.get(f, f) for f in matched.get("fields", [])]
    stems = set(matched.get("terms", []))
    words = [w for w in dict.fromkeys(query.split()) if stems.intersection(analyze(w))]
    similarity = matched.get("dense_similarity")
    parts: list[str] = []
    if words:
        parts.append(f"Matches “{' '.join(words)}” in the title")
        other = [f for f in fields if f != "title"]
        if other:
            parts.append(f"and words in the {', '.join(other)}")
    elif fields:
        parts.append(f"Matches your words in the {', '.join(fields)}")
    if similarity is not None:
        parts.append(f"close in meaning to your search (similarity {similarity:.2f})")
    memory = matched.get("memory_similarity")
    if memory is not None:
        parts.append(f"shoppers chose it after a similar search (similarity {memory:.2f})")
    if not parts:  # nothing to match (a category or price page): popularity ordered it
        parts.append("Popular among what you asked for")
    boosts = _boosts(hit, affinity or {})
    parts += [b["text"] for b in boosts]
    phrases = filter_phrases(filters)
    if phrases:
        parts.append("fits " + ", ".join(phrases))
    text = "; ".join(parts)
    return {"type": "search", "text": text[0].upper() + text[1:], "matched_words": words, "fields": fields,
            "dense_similarity": similarity, "memory_similarity": memory, "filters": phrases, "boosts": boosts}


def _boosts(hit: Mapping[str, Any], affinity: Mapping[str, Mapping[str, float]]) -> list[dict[str, Any]]:
    """The shopper's affinities that apply to this hit (what `SearchEngine._affinity` added to its score)."""
    out: list[dict[str, Any]] = []
    brand = hit.get("brand")
    for name, weight in affinity.get("brands", {}).items():
        if brand and fold(name) == fold(brand) and weight > 0:
            out.append({"kind": "personal", "on": "brand", "value": name, "weight": round(float(weight), 3),
                        "text": f"you often choose {name}"})
    path = {fold(c) for c in hit.get("category") or ()}
    for name, weight in affinity.get("categories", {}).items():
        if fold(name) in path and weight > 0:
            out.append({"kind": "personal", "on": "category", "value": name, "weight": round(float(weight), 3),
                        "text": f"you often shop {name}"})
    return out


__all__ = ["explain_hit", "filter_phrases"]
