"""The error model in one place: which statuses a route answers, documented with the one error body.

Every error the API answers has the body `ErrorOut` (`{"error": NAME, "detail": ...}`): `detail` is a list of
issues for a 422 and a sentence otherwise. Routes say which statuses they can answer with `responses(...)`, so
the published OpenAPI lists each of them with that schema.
"""

from __future__ import annotations

from typing import Any

from aisle.serve.schemas import ErrorOut

#: status -> the `error` name the body carries, and what the status means here
STATUSES: dict[int, tuple[str, str]] = {
    400: ("error", "The body could not be read as JSON text (e.g. it is not UTF-8)."),
    401: ("unauthorized", "This route needs an API key (X-API-Key header or Authorization: Bearer) and none "
                          "was sent."),
    403: ("forbidden", "The API key sent is not one of this server's keys (or not an admin key)."),
    404: ("not_found", "No such item, file or bundle."),
    405: ("method_not_allowed", "The path exists but not with this method; the Allow header lists those it has."),
    409: ("conflict", "The request does not fit what the server serves: /admin/reload of a model bundle, of a path "
                      "on a server that follows a registry (name a version), of a version on one that serves a "
                      "folder, or of a registry with no current version."),
    413: ("too_large", "The body is over the server's max_body_bytes (sent with a length or chunked), or a batch "
                       "is over max_batch records."),
    422: ("validation", "A parameter or a field of the body breaks a rule; `detail` lists every problem found."),
    500: ("internal", "A failure of the server (never a stack trace); for /admin/reload: the new bundle did not "
                      "load and the previous one keeps serving."),
    503: ("not_ready", "No bundle is loaded yet (see /ready), or this bundle lacks what the route needs "
                       "(`unavailable`: e.g. no search index), or the store / event stream did not take a write "
                       "(`unavailable`: nothing of the batch was taken, send it again)."),
}

#: every route that reads the bundle can answer these
READ = (422, 503)
#: every route that takes a key and a body
WRITE = (400, 401, 403, 413, 422, 503)


def name(status: int) -> str:
    return STATUSES.get(status, ("error", ""))[0]


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status with its meaning and the error body's schema."""
    return {code: {"model": ErrorOut, "description": STATUSES[code][1]} for code in sorted(set(codes))}


__all__ = ["READ", "STATUSES", "WRITE", "name", "responses"]
