#!/bin/sh
# publish-sample.sh - the one-shot sample producer of deploy/compose.yaml: publishes
# deploy/sample/feed.jsonl to $REDIS_URL with the feed tool, once per Redis (a marker key
# says it was done, as deploy/local.sh does), so restarting the compose project does not
# publish the morning twice.
#   REDIS_URL=redis://redis:6379/0 publish-sample
# FEED (default feed) and FEED_FILE (default /usr/share/projector/feed.jsonl) override
# the tool and the file.
set -eu
: "${REDIS_URL:?set REDIS_URL, e.g. redis://redis:6379/0}"
FEED=${FEED:-feed}
FEED_FILE=${FEED_FILE:-/usr/share/projector/feed.jsonl}
MARKER=projector:sample:published

if [ "$(redis-cli -u "$REDIS_URL" --no-auth-warning SET "$MARKER" 1 NX)" != OK ]; then
    echo "publish-sample: the sample feed was already published to this Redis"
    exit 0
fi
if ! "$FEED" "$REDIS_URL" "$FEED_FILE"; then
    redis-cli -u "$REDIS_URL" --no-auth-warning DEL "$MARKER" >/dev/null
    echo "publish-sample: could not publish $FEED_FILE" >&2
    exit 1
fi
