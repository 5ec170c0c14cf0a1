#!/bin/sh
# The fleet's init job (compose service `init`, the Kubernetes Job `aisle-init`): make sure a serving bundle is in
# /bundle/current before the API starts. A shop mounts its own bundle there (then this does nothing); a fresh
# `make up` gets the built-in synthetic store, ingested into the fleet's store (AISLE_STORE) and trained from it,
# so the API serves, appends and erases against the same PostgreSQL the bundle came from.
# Sizes: AISLE_INIT_ITEMS / _USERS / _EVENTS (small by default: the fleet starts in about a minute).
set -eu
bundle=/bundle/current
if [ -f "$bundle/manifest.json" ]; then
    echo "init: $bundle holds a bundle; nothing to do"
    exit 0
fi
: "${AISLE_STORE:?init: set AISLE_STORE (the store the API writes to) so the bundle is trained from it}"
work="$(mktemp -d)"
aisle generate --out "$work/shop" --items "${AISLE_INIT_ITEMS:-1000}" --users "${AISLE_INIT_USERS:-500}" \
    --events "${AISLE_INIT_EVENTS:-20000}"
aisle ingest "aisle:$work/shop" --db "$AISLE_STORE"
# train into a sibling folder, then rename: an API that starts meanwhile never sees half a bundle
rm -rf /bundle/.training
aisle train "store:$AISLE_STORE" --out /bundle/.training --config /etc/aisle/pipeline.toml
mv /bundle/.training "$bundle"
rm -rf "$work"
echo "init: trained $bundle"
