#!/usr/bin/python3
"""pyworker.py - the benchmark's peer baseline: a hand-written Python projection worker.

What a team writes without a projector: redis-py + psycopg2, one consumer group over both
streams, XREADGROUP a batch, one upsert or update per event (the same three read models as
readmodels/), commit per batch, then XACK. Runs until it has applied EVENTS entries and
prints one JSON line (events, seconds, events/s).

    pyworker.py REDIS_URL PG_CONNINFO EVENTS [BATCH]
"""
import json
import sys
import time

import psycopg2
import redis

GROUP = "pyworker"
STREAMS = ("customers", "orders")  # customers first: an order's lookup needs its customer

UPSERT_CUSTOMER = """
INSERT INTO customers (id, name, email) VALUES (%s, %s, %s)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email"""
RENAME_CUSTOMER = "UPDATE customers SET name = %s WHERE id = %s"
RENAME_ORDERS = "UPDATE order_read_model SET customer_name = %s WHERE customer_id = %s"
UPSERT_ORDER = """
INSERT INTO order_read_model (id, customer_id, customer_name, status, item_count, total,
                              currency, created_at, version)
VALUES (%s, %s, (SELECT name FROM customers WHERE id = %s), 'pending', %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET customer_id = EXCLUDED.customer_id,
    customer_name = EXCLUDED.customer_name, status = EXCLUDED.status,
    item_count = EXCLUDED.item_count, total = EXCLUDED.total, currency = EXCLUDED.currency,
    created_at = EXCLUDED.created_at, version = EXCLUDED.version
WHERE order_read_model.version < EXCLUDED.version"""
ADD_ITEMS = "UPDATE order_read_model SET item_count = item_count + %s WHERE id = %s"
CONFIRM = "UPDATE order_read_model SET status = 'confirmed', confirmed_at = %s WHERE id = %s"
DELETE_ORDER = "DELETE FROM order_read_model WHERE id = %s"
STATS_PLACED = """
INSERT INTO customer_stats (customer_id, orders, total_spent, last_order_at)
VALUES (%s, 1, %s, %s)
ON CONFLICT (customer_id) DO UPDATE SET orders = customer_stats.orders + 1,
    total_spent = customer_stats.total_spent + EXCLUDED.total_spent,
    last_order_at = EXCLUDED.last_order_at"""
STATS_CANCELLED = """
INSERT INTO customer_stats (customer_id, orders_cancelled) VALUES (%s, 1)
ON CONFLICT (customer_id) DO UPDATE
    SET orders_cancelled = customer_stats.orders_cancelled + 1"""


def decode(fields):
    """(type, occurred_at, version, payload) from either encoding."""
    if b"event" in fields:
        env = json.loads(fields[b"event"])
        return env["eventType"], env.get("timestamp"), env.get("version"), env["payload"]
    return (fields[b"type"].decode(), fields[b"occurred_at"].decode(),
            int(fields[b"version"]), json.loads(fields[b"payload"]))


def apply(cur, fields):
    kind, at, version, p = decode(fields)
    if kind == "customer.registered":
        cur.execute(UPSERT_CUSTOMER, (p["customerId"], p["name"], p.get("email")))
    elif kind == "customer.renamed":
        cur.execute(RENAME_CUSTOMER, (p["name"], p["customerId"]))
        cur.execute(RENAME_ORDERS, (p["name"], p["customerId"]))
    elif kind == "order.placed":
        cur.execute(UPSERT_ORDER, (p["orderId"], p["customerId"], p["customerId"],
                                   len(p["items"]), p["total"]["amount"],
                                   p["total"]["currency"], at, version))
        cur.execute(STATS_PLACED, (p["customerId"], p["total"]["amount"], at))
    elif kind == "order.item_added":
        cur.execute(ADD_ITEMS, (p["qty"], p["orderId"]))
    elif kind == "order.confirmed":
        cur.execute(CONFIRM, (at, p["orderId"]))
    elif kind == "order.cancelled":
        cur.execute(DELETE_ORDER, (p["orderId"],))
        cur.execute(STATS_CANCELLED, (p["customerId"],))


def ensure_group(r, stream):
    try:
        r.xgroup_create(stream, GROUP, id="0")
    except redis.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit("usage: pyworker.py REDIS_URL PG_CONNINFO EVENTS [BATCH]")
    url, conninfo, want = sys.argv[1], sys.argv[2], int(sys.argv[3])
    batch = int(sys.argv[4]) if len(sys.argv) == 5 else 1000
    r = redis.Redis.from_url(url)
    pg = psycopg2.connect(conninfo)
    for s in STREAMS:
        ensure_group(r, s)
    done, idle_since = 0, None
    t0 = time.monotonic()
    while done < want:
        reply = r.xreadgroup(GROUP, "py", {s: ">" for s in STREAMS}, count=batch, block=100)
        if not reply:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 5:
                sys.exit("pyworker: no new entries for 5 s after %d of %d" % (done, want))
            continue
        idle_since = None
        # The reply lists streams in the order asked: customers first.
        with pg.cursor() as cur:
            for _, entries in reply:
                for _, fields in entries:
                    apply(cur, fields)
        pg.commit()
        for stream, entries in reply:
            r.xack(stream, GROUP, *[eid for eid, _ in entries])
            done += len(entries)
    seconds = time.monotonic() - t0
    print(json.dumps({"events": done, "batch": batch, "seconds": round(seconds, 3),
                      "events_per_second": round(done / seconds, 1)}))


if __name__ == "__main__":
    main()
