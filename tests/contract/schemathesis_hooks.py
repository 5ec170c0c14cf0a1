"""Schemathesis hooks for `test_openapi_fuzz`: the rules the published schema states in words because
JSON Schema cannot state them, applied to the generated requests before they are sent.

- `price_min` is not above `price_max` (a rule across two parameters; the server answers 422 otherwise);
- an event's `timestamp` lies in the accepted window, which ends at *now* + 1 day (`aisle.data.checks`);
- `/search`'s `undo` and `step` go with a `session` (they act on a conversation).

Without them the fuzzer would call those 422s "schema-valid request rejected". Only values that break the rule
are changed (a price pair swapped, an out-of-window time replaced by one inside it), so a request meant to be
invalid for another reason stays invalid.

And one failure is dropped, because it cannot be seen on the wire: a "schema-violating" value of a query parameter
that is a list of unconstrained strings (`category`, `brand`, `exclude`: e.g. a number or a null inside the list)
is sent as text, which is a valid string; the server rightly takes it. `WIRE_STRING_LISTS` names them, and the
test checks that the published schema still declares each one so. The same holds for a plain string parameter made
an array (`conversation=a&conversation=b` on the wire: the last one is a valid string): `WIRE_STRINGS`; and for
any query scalar whose failure is only that it "became array" (`price_max=0.0` is one valid number on the wire).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import schemathesis

from aisle.data import checks

_IN_WINDOW = "2026-01-02T03:04:05Z"


#: query parameters declared as arrays of strings with no constraint: any text on the wire is valid
WIRE_STRING_LISTS = frozenset({"category", "brand", "exclude"})
#: query parameters that are plain strings: an array of them on the wire is several valid strings, the last one taken
WIRE_STRINGS = frozenset({"q", "user", "session", "session_id", "context_item"})


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _outside(text: Any) -> bool:
    if not isinstance(text, str):
        return False
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    try:
        checks.check_timestamp(ts)
    except ValueError:
        return True
    return False


@schemathesis.hook
def before_call(_context: Any, case: Any, _kwargs: dict[str, Any]) -> None:
    query = case.query
    if isinstance(query, dict):
        low, high = _number(query.get("price_min")), _number(query.get("price_max"))
        if low is not None and high is not None and low > high:
            query["price_min"], query["price_max"] = query["price_max"], query["price_min"]
        turn = query.get("undo") in (True, "true", "True") or query.get("step") is not None
        if turn and not query.get("conversation"):
            query["conversation"] = "fuzz-conversation"
    body = case.body
    events = body.get("events") if isinstance(body, dict) else None
    for event in events if isinstance(events, list) else ():
        if isinstance(event, dict) and _outside(event.get("timestamp")):
            event["timestamp"] = _IN_WINDOW


@schemathesis.hook
def filter_failure(_context: Any, failure: Any, case: Any, _response: Any) -> bool:
    """False (drop) only for an accepted "negative" query value of a list-of-strings parameter (see above)."""
    if getattr(failure, "code", None) != "ST201" or case.meta is None:
        return True
    data = case.meta.phase.data
    location = getattr(getattr(data, "parameter_location", None), "name", "")
    mutations = list(getattr(data, "mutations", ()) or ())
    names = {getattr(data, "parameter", None)} | {m.parameter for m in mutations}
    names.discard(None)
    # a scalar made an array is sent as the parameter repeated (or once, for one element): FastAPI takes the last
    # value, which the server accepted only because it was valid
    arrays = {m.parameter for m in mutations if tuple(m.keywords) == ("type",) and m.new_value == "array"}
    return not (location.lower() == "query" and names and names <= WIRE_STRING_LISTS | WIRE_STRINGS | arrays)
