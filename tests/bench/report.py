#!/usr/bin/python3
"""report.py - the benchmark's summary: reads the stage results that tests/bench/run.sh
left in RESULTS_DIR (one JSON file per stage, tables.txt), prints one table and writes it
all as one JSON document to OUT. A stage that failed shows as "failed"; the targets of
issue 4 are printed beside the figures, never enforced.

    report.py RESULTS_DIR OUT
"""
import json
import os
import sys

TARGET_CEILING = 0.85  # drain / single-connection ceiling
TARGET_PEER = 10.0  # drain / Python worker
TARGET_P50_MS, TARGET_P99_MS = 2.0, 5.0
TARGET_RSS_MIB = 32.0
TARGET_CPU_VS_PG = 0.25
TARGET_POISON_ALL, TARGET_POISON_SOME = 0.20, 0.80  # poison drain / healthy drain


def load(results, name):
    try:
        with open(os.path.join(results, name + ".json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def digests(results):
    """{db: {table: (count, md5)}} from tables.txt."""
    out = {}
    try:
        with open(os.path.join(results, "tables.txt")) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 4:
                    out.setdefault(parts[0], {})[parts[1]] = (int(parts[2]), parts[3])
    except OSError:
        pass
    return out


def tables_equal(d):
    """'yes', or what differs from the daemon's tables."""
    base = d.get("drain")
    if not base:
        return "unknown"
    diffs = ["%s.%s" % (db, t) for db in ("drain_parallel", "ceiling", "pyworker") if db in d
             for t in base if d[db].get(t) != base[t]]
    return "yes" if not diffs else "NO: " + ", ".join(diffs)


def ratio(a, b):
    return round(a / b, 3) if a and b else None


def build(results):
    env = load(results, "env") or {}
    drain, ceiling, python = (load(results, n) for n in ("drain", "ceiling", "python"))
    parallel = load(results, "drain_parallel")
    d = digests(results)
    drain_eps = drain and drain["events_per_second"]
    ceiling_eps = ceiling and ceiling["events_per_second"]
    doc = {
        "environment": env,
        "feed": load(results, "feed"),
        "drain": {
            "projector": drain,
            "ceiling": ceiling,
            "python": python,
            "parallel": parallel,
            "vs_ceiling": ratio(drain_eps, ceiling_eps),
            "parallel_vs_ceiling": ratio(parallel and parallel["events_per_second"],
                                         ceiling_eps),
            "vs_python": ratio(drain_eps, python and python["events_per_second"]),
            "tables_equal": tables_equal(d),
            "table_rows": {t: c for t, (c, _) in d.get("drain", {}).items()},
        },
        "latency": {"shipped": load(results, "lat_shipped"),
                    "models": load(results, "lat_models")},
        "footprint": None,
        "rebuild": "n/a (rebuild not implemented)",
    }
    events = env.get("events")
    doc["pg_cpu_per_100k"] = {}
    for name, stage in (("drain", drain), ("ceiling", ceiling), ("python", python)):
        pg = load(results, name + ".pg")
        # The drain measures from the daemon's start; the wrapper's figure is the fallback.
        cpu = stage.get("pg_cpu_seconds") if stage else None
        if cpu is None and stage and pg:
            cpu = pg["pg_cpu_seconds"]
        if cpu is not None and events:
            doc["pg_cpu_per_100k"][name] = round(cpu * 1e5 / events, 3)
    if drain:
        doc["footprint"] = {
            "rss_peak_mib": round(drain["rss_peak_kib"] / 1024.0, 1),
            "cpu_seconds_per_100k": drain["cpu_seconds_per_100k"],
            "cpu_vs_pg": drain["cpu_vs_pg"],
            "pg_cpu_seconds": drain["pg_cpu_seconds"],
            "redis_cpu_seconds": drain["redis_cpu_seconds"],
        }
    doc["poison"] = poison(results)
    return doc


def poison(results):
    """The poison stage: drains of 0, 1 and 100 refused orders in 100, and the stops."""
    drains = {pct: load(results, "poison_%s" % pct) for pct in ("0", "1", "100", "1a", "100a")}
    healthy = drains["0"] and drains["0"]["events_per_second"]
    out = {"drains": drains, "stops": {pct: load(results, "poison_stop_%d" % pct)
                                       for pct in (1, 100)}}
    out["vs_healthy"] = {pct: ratio(d and d["events_per_second"], healthy)
                         for pct, d in drains.items() if pct != "0"}
    return out


def num(v, fmt="{:,.0f}"):
    return "failed" if v is None else fmt.format(v)


def row(label, value, note=""):
    print("  %-44s %-22s %s" % (label, value, note))


def print_drain(doc):
    dr = doc["drain"]
    p, c, py = dr["projector"], dr["ceiling"], dr["python"]
    print("drain (events/s, %s events pre-loaded, read tables empty)"
          % num(doc["environment"].get("events")))
    row("projector, shipped read models", num(p and p["events_per_second"]),
        p and "%.1f s, daemon start to /wait 200 on every stream" % p["seconds"] or "")
    row("ceiling: set-based SQL, 1 connection", num(c and c["events_per_second"]),
        c and "%d transactions, %.1f s in PostgreSQL" % (c["transactions"], c["apply_seconds"])
        or "")
    par = dr["parallel"]
    row("projector, parallel_apply %s" % doc["environment"].get("parallel", "?"),
        num(par and par["events_per_second"]),
        par and "%.1f s, CPU %.2f s/100k, PostgreSQL %.2f s/100k"
        % (par["seconds"], par["cpu_seconds_per_100k"],
           par["pg_cpu_seconds"] * 1e5 / doc["environment"].get("events", 1)) or "")
    row("Python worker (redis-py + psycopg2)", num(py and py["events_per_second"]),
        py and "%.1f s" % py["seconds"] or "")
    row("projector / ceiling", num(dr["vs_ceiling"], "{:.2f}"),
        "target >= %.2f" % TARGET_CEILING)
    row("projector parallel / ceiling", num(dr["parallel_vs_ceiling"], "{:.2f}"),
        "target > 1.00")
    row("projector / Python worker", num(dr["vs_python"], "{:.1f}x"),
        "target >= %.0fx" % TARGET_PEER)
    row("read tables identical in all four", dr["tables_equal"],
        ", ".join("%s %s" % (t, num(n)) for t, n in sorted(dr["table_rows"].items())))
    if p and p.get("dead_letters"):
        row("dead letters", num(p["dead_letters"]), "the feed has no bad event: a bug")


def print_latency(doc):
    env = doc["environment"]
    print("latency (XADD to /wait 200, %s events/s, %s events after %s of warm-up)"
          % (num(env.get("rate")), num(env.get("samples")), num(env.get("warmup"))))
    names = {"shipped": "shipped read models (2 read \"orders\")",
             "models": "%s read models on \"orders\"" % env.get("models", 5)}
    for key, label in names.items():
        lat = doc["latency"][key]
        if lat is None:
            row(label, "failed")
            continue
        note = ("max %.1f ms, %d failed, %.0f/s sent, daemon CPU %.0f%%"
                % (lat["max_ms"], lat["failed"], lat["achieved_rate"],
                   lat["daemon_cpu_percent"]))
        if lat.get("listen_overflows", 0) > 0:
            note += ", %d SYNs dropped (listen queue full)" % lat["listen_overflows"]
        row(label, "p50 %.2f  p99 %.2f ms" % (lat["p50_ms"], lat["p99_ms"]), note)
    row("targets", "p50 <= %.0f  p99 <= %.0f ms" % (TARGET_P50_MS, TARGET_P99_MS))


def print_footprint(doc):
    fp = doc["footprint"]
    print("footprint (daemon, during the drain)")
    if fp is None:
        row("all", "failed")
        return
    row("peak RSS (VmHWM)", "%.1f MiB" % fp["rss_peak_mib"], "target <= %.0f MiB" % TARGET_RSS_MIB)
    row("CPU per 100,000 events", "%.2f s" % fp["cpu_seconds_per_100k"])
    row("projector CPU / PostgreSQL CPU", "%.2f" % fp["cpu_vs_pg"],
        "target <= %.2f (PostgreSQL %.1f s, Redis %.1f s)"
        % (TARGET_CPU_VS_PG, fp["pg_cpu_seconds"], fp["redis_cpu_seconds"]))
    pg = doc["pg_cpu_per_100k"]
    def secs(v):
        return "n/a" if v is None else "%.2f s" % v
    row("PostgreSQL CPU per 100,000 events", secs(pg.get("drain")),
        "ceiling %s, Python worker %s" % (secs(pg.get("ceiling")), secs(pg.get("python"))))


def print_poison(doc):
    po = doc["poison"]
    print("poison (the orders read model, %s orders placed, some for unknown customers)"
          % num(doc["environment"].get("poison_events")))
    labels = {"0": "none refused (healthy)",
              "1": "1 in 100 refused (unknown customer)",
              "100": "every one refused (unknown customer)",
              "1a": "1 in 100 refused (bad amount)",
              "100a": "every one refused (bad amount)"}
    targets = {"1": TARGET_POISON_SOME, "100": TARGET_POISON_ALL,
               "1a": TARGET_POISON_SOME, "100a": TARGET_POISON_ALL}
    for pct, label in labels.items():
        d = po["drains"].get(pct)
        note = d and "%.1f s, %s dead letters" % (d["seconds"], num(d["dead_letters"])) or ""
        if pct != "0":
            note += ", %s of healthy (target >= %.2f)" % (
                num(po["vs_healthy"].get(pct), "{:.2f}"), targets[pct])
        row(label, num(d and d["events_per_second"]), note)
    for pct, st in po["stops"].items():
        row("SIGTERM, %d in 100 refused" % pct,
            "failed" if st is None else "exit %d in %d ms" % (st["exit_code"], st["stop_ms"]),
            st and "%s orders settled by then" % num(st["settled_at_sigterm"]) or "")


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: report.py RESULTS_DIR OUT")
    doc = build(sys.argv[1])
    env = doc["environment"]
    print()
    print("projector benchmark: commit %s, %s, %s CPUs, load %s at start, PostgreSQL %s "
          "(fsync %s), Redis %s, batch %s"
          % (env.get("commit"), env.get("date"), env.get("cpus"), env.get("load_at_start"),
             env.get("postgresql"), env.get("fsync"), env.get("redis"), env.get("batch")))
    if not env.get("poison_only"):
        print_drain(doc)
        print_latency(doc)
        print_footprint(doc)
        print("rebuild")
        row("full rebuild", doc["rebuild"])
    print_poison(doc)
    with open(sys.argv[2], "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print("written to %s" % sys.argv[2])


if __name__ == "__main__":
    main()
