#!/bin/sh
# The fleet's init job (compose service `init`, the Kubernetes Job `aisle-init`): make sure the bundle registry in
# /bundle (`aisle.registry`: versions/, and `current` naming the one served) has a version before the API starts.
# A shop publishes its own (`aisle bundles publish BUNDLE --registry /bundle`; then this does nothing); a fresh
# `make up` gets the built-in synthetic store, ingested into the fleet's store (AISLE_STORE) and fitted from it by
# the worker's own refit (`aisle worker --once refit`: the first version carries the store's watermark, so the
# `worker` service goes on with refreshes instead of refitting at once), so the API serves, appends and erases
# against the same PostgreSQL the bundle came from.
# Sizes: AISLE_INIT_ITEMS / _USERS / _EVENTS (small by default: the fleet starts in about a minute).
set -eu
registry=/bundle
if [ -s "$registry/current" ]; then
    echo "init: the registry $registry serves $(cat "$registry/current"); nothing to do"
    exit 0
fi
: "${AISLE_STORE:?init: set AISLE_STORE (the store the API writes to) so the bundle is trained from it}"
work="$(mktemp -d)"
aisle generate --out "$work/shop" --items "${AISLE_INIT_ITEMS:-1000}" --users "${AISLE_INIT_USERS:-500}" \
    --events "${AISLE_INIT_EVENTS:-20000}"
aisle ingest "aisle:$work/shop" --db "$AISLE_STORE"
# the registry publishes a version whole (written aside, then renamed): an API never sees half a bundle
# (the latency check of this first version runs while the rest of the fleet starts beside it: a wide budget)
AISLE_BUNDLE="$registry" AISLE_WORKER__PIPELINE=/etc/aisle/pipeline.toml \
    AISLE_WORKER__LATENCY_BUDGET_MS="${AISLE_INIT_LATENCY_BUDGET_MS:-2000}" aisle worker --once refit
rm -rf "$work"
echo "init: published $(cat "$registry/current")"
