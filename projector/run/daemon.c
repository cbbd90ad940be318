/* daemon.c - the daemon's lifecycle: bookkeeping schema and read tables first, then the
 * HTTP server and one worker per read model, then signals until stopped.
 *
 * Signals are blocked before any thread starts and taken by sigwait here, so SIGTERM lets
 * every worker finish and commit its batch in flight. SIGHUP reloads the read models: the
 * new files are loaded and checked beside the running set; only if they are valid (and
 * need no rebuild) is the serving part stopped and started again on them.
 *
 * Under a service manager (systemd's notify protocol, os/notify.h) the main loop also says
 * READY once every read model has started, RELOADING and READY around a reload, STOPPING
 * on a stop, a STATUS line each second, and WATCHDOG while every worker's loop turns.
 */
#include "run/daemon.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/backoff.h"
#include "base/log.h"
#include "board/board.h"
#include "http/http.h"
#include "os/notify.h"
#include "os/now.h"
#include "run/worker.h"
#include "sink/migrations.h"
#include "sink/pg.h"
#include "sink/tables.h"

#define STOPPED_WHILE_WAITING (-1)
#define TICK_MS 1000 /* the main loop's beat: status line, readiness, watchdog */

typedef struct Daemon {
    const Config *cfg;
    ModelSet *set;
    sigset_t signals;
    atomic_bool stop;
    Board *board;
    Http *http;
    int listener; /* between a reload's stop and start: the kept HTTP socket, else -1 */
    Worker **workers;
    bool ready;                /* READY=1 sent since the last start of serving */
    BoardTally *tally;         /* between a reload's stop and start: the counters carried over */
    const DaemonReload *again; /* what SIGHUP reads again besides the read models */
    int64_t watchdog_ms;       /* the service manager's watchdog interval, 0: none */
} Daemon;

/* Waits for a signal up to ms (forever when ms < 0); returns it, or 0 on timeout. */
static int wait_signal(Daemon *d, int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    int sig = ms < 0 ? sigwaitinfo(&d->signals, NULL) : sigtimedwait(&d->signals, NULL, &ts);
    return sig < 0 ? 0 : sig;
}

static bool is_stop_signal(int sig)
{
    return sig == SIGTERM || sig == SIGINT;
}

/* Connects to PostgreSQL, waiting (and answering SIGTERM) while it is unreachable. */
static int connect_pg_patiently(Daemon *d, Pg **ret)
{
    PjError err;
    Backoff backoff;
    bool logged = false;

    backoff_init(&backoff, d->cfg->backoff_min_ms, d->cfg->backoff_max_ms,
                 (uint64_t)now_monotonic_ms());
    while (pg_connect(d->cfg->pg_conninfo, ret, &err) < 0) {
        if (!logged)
            log_warn(NULL, "%s, retrying", err.message);
        logged = true;
        notify_watchdog(); /* waiting is not hanging */
        if (is_stop_signal(wait_signal(d, backoff_next(&backoff))))
            return STOPPED_WHILE_WAITING;
    }
    return 0;
}

static void log_diagnostics(const Diagnostics *diag)
{
    StrBuf sb = {0};

    for (size_t i = 0; i < diag->count; i++) {
        strbuf_reset(&sb);
        diag_format(&diag->items[i], &sb);
        log_error(NULL, "%s", sb.buf);
    }
    strbuf_done(&sb);
}

/* Bookkeeping schema, read tables, registry: everything before the first event.
 * Returns 0, an exit code, or STOPPED_WHILE_WAITING. */
static int prepare_database(Daemon *d)
{
    Pg *pg = NULL;
    PjError err;
    Diagnostics diag = {0};
    if (connect_pg_patiently(d, &pg) < 0)
        return STOPPED_WHILE_WAITING;
    int code = 0, applied = 0;
    if (migrations_apply(pg, d->cfg->pg_schema, &applied, &err) < 0) {
        log_error(NULL, "could not migrate schema \"%s\": %s", d->cfg->pg_schema, err.message);
        code = PJ_EXIT_RUNTIME;
    } else if (tables_ensure(pg_conn(pg), d->set, &diag) < 0) {
        log_diagnostics(&diag);
        code = PJ_EXIT_USAGE;
    } else if (migrations_register_models(pg, d->cfg->pg_schema, d->set, &err) < 0) {
        log_error(NULL, "could not register the read models: %s", err.message);
        code = PJ_EXIT_RUNTIME;
    }
    if (applied > 0)
        log_info(NULL, "applied %d migration%s to schema \"%s\"", applied, applied == 1 ? "" : "s",
                 d->cfg->pg_schema);
    diag_done(&diag);
    pg_free(pg);
    return code;
}

static int start_serving(Daemon *d)
{
    PjError err;
    HttpOptions opts = {
        .listen = d->cfg->http_listen,
        .token = d->cfg->http_token,
        .max_connections = (unsigned)d->cfg->http_max_connections,
        .max_request_bytes = (unsigned)d->cfg->http_max_request_bytes,
        .max_waiters = (unsigned)d->cfg->http_max_waiters,
        .reserved_connections = (unsigned)d->cfg->http_reserved_connections,
        .header_timeout_ms = (unsigned)d->cfg->http_header_timeout_ms,
        .wait_timeout_default_ms = (unsigned)d->cfg->wait_timeout_ms,
        .wait_timeout_max_ms = (unsigned)d->cfg->wait_timeout_max_ms,
        .has_listener = d->listener >= 0,
        .listener_fd = d->listener,
    };
    d->listener = -1; /* http_start takes it over, whatever happens */
    atomic_store(&d->stop, false);
    d->board = board_new(d->set);
    board_tally_restore(d->board, d->tally);
    d->tally = board_tally_free(d->tally);
    if (http_start(&opts, d->board, &d->http, &err) < 0) {
        log_error(NULL, "could not start the HTTP server on \"%s\": %s", d->cfg->http_listen,
                  err.message);
        return PJ_EXIT_RUNTIME;
    }
    d->workers = xcalloc(d->set->count, sizeof(Worker *));
    for (size_t i = 0; i < d->set->count; i++) {
        WorkerOpts wo = {
            .cfg = d->cfg, .set = d->set, .rm = i, .board = d->board, .stop = &d->stop};
        if (worker_start(&wo, &d->workers[i], &err) < 0) {
            log_error(NULL, "%s", err.message);
            return PJ_EXIT_RUNTIME;
        }
    }
    log_info(NULL, "projecting %zu read model%s, HTTP on %s", d->set->count,
             d->set->count == 1 ? "" : "s", d->cfg->http_listen);
    return 0;
}

/* Stops in dependency order: workers finish their batch (board_shutdown wakes any waiting
 * on a lookup), then the HTTP server answers the waiters still pending, then the board.
 * keep_listener (a reload): the HTTP socket stays open, so connections queue meanwhile. */
static void stop_serving(Daemon *d, bool keep_listener)
{
    atomic_store(&d->stop, true);
    if (d->board != NULL)
        board_shutdown(d->board);
    for (size_t i = 0; d->workers != NULL && i < d->set->count; i++)
        d->workers[i] = worker_join(d->workers[i]);
    free(d->workers);
    d->workers = NULL;
    if (keep_listener && d->http != NULL)
        d->http = http_stop_keep(d->http, &d->listener);
    else
        d->http = http_stop(d->http);
    if (keep_listener && d->board != NULL)
        d->tally = board_tally_take(d->board); /* the counters outlive the reload */
    d->board = board_free(d->board);
}

/* ---- reload ---- */

static bool same_key(const Model *a, const Model *b)
{
    if (a->nkey != b->nkey)
        return false;
    for (size_t k = 0; k < a->nkey; k++)
        if (strcmp(a->columns[a->key[k]].name, b->columns[b->key[k]].name) != 0)
            return false;
    return true;
}

/* A read model that keeps its name but changes its table or key needs a rebuild, which a
 * reload does not do. Returns the name of the first such model, or NULL. */
static const char *needs_rebuild(const ModelSet *old, const ModelSet *fresh)
{
    for (size_t i = 0; i < fresh->count; i++) {
        int o = model_set_find(old, fresh->models[i].name);
        if (o < 0)
            continue;
        const Model *a = &old->models[o], *b = &fresh->models[i];
        if (strcmp(a->table, b->table) != 0 || !same_key(a, b))
            return b->name;
    }
    return NULL;
}

/* Loads and checks the read models again. Returns the new set, or NULL (logged) when the
 * running one must be kept. */
static ModelSet *load_for_reload(Daemon *d)
{
    ModelSet *fresh = NULL;
    Diagnostics diag = {0};
    if (model_load_dir(d->cfg->readmodels_dir, &fresh, &diag) < 0) {
        log_diagnostics(&diag);
        log_error(NULL, "cannot reload: %zu error%s in the read models, keeping the running ones",
                  diag.count, diag.count == 1 ? "" : "s");
        diag_done(&diag);
        return NULL;
    }
    diag_done(&diag);
    const char *changed = needs_rebuild(d->set, fresh);
    if (changed != NULL) {
        log_error(NULL,
                  "cannot reload: read model \"%s\" changed its table or key, which needs a "
                  "rebuild; keeping the running read models",
                  changed);
        model_set_free(fresh);
        return NULL;
    }
    return fresh;
}

/* Returns 0 or an exit code when the daemon cannot go on. */
/* SIGHUP also reads projector.yaml's log level and format again (the other keys need a
 * restart); an invalid file changes nothing and says why. */
static void reload_logging(const Daemon *d)
{
    if (d->again == NULL || d->again->config_path == NULL)
        return;
    Config *cfg = NULL;
    Diagnostics diag = {0};
    if (config_load(d->again->config_path, false, NULL, &cfg, &diag) < 0) {
        log_error(NULL, "cannot reload the log settings: %zu error%s in \"%s\"", diag.count,
                  diag.count == 1 ? "" : "s", d->again->config_path);
        log_diagnostics(&diag);
    } else {
        if (!d->again->level_fixed)
            log_set_level(cfg->log_level);
        log_set_format(cfg->log_format);
        log_info(NULL, "log level %s, format %s", log_level_name(cfg->log_level),
                 log_format_name(cfg->log_format));
    }
    diag_done(&diag);
    config_free(cfg);
}

static int reload(Daemon *d)
{
    reload_logging(d);
    ModelSet *fresh = load_for_reload(d);
    if (fresh == NULL)
        return 0;
    log_info(NULL, "reloading %zu read model%s", fresh->count, fresh->count == 1 ? "" : "s");
    stop_serving(d, true);
    ModelSet *old = d->set;
    d->set = fresh;
    int code = prepare_database(d);
    if (code == STOPPED_WHILE_WAITING) {
        model_set_free(old);
        return STOPPED_WHILE_WAITING;
    }
    if (code != 0) {
        log_error(NULL, "cannot reload: the read tables do not accept the new definitions, "
                        "keeping the running read models");
        d->set = old;
        model_set_free(fresh);
    } else {
        model_set_free(old);
    }
    return start_serving(d);
}

/* ---- the service manager ---- */

/* The read models in one line ("2 read models: 1 running, 1 catching_up; 120 entries
 * behind, lag 3.2 s"); false while any of them is still starting. */
static bool status_line(Board *b, char *buf, size_t size)
{
    static const char *const states[] = {"starting", "running", "catching_up",
                                         "retrying", "stopped", "rebuilding"};
    size_t count[ARRAY_SIZE(states)] = {0};
    uint64_t behind = 0;
    double lag = 0;
    json_t *doc = board_json(b, -1), *rm;
    size_t i;
    json_array_foreach(json_object_get(doc, "readmodels"), i, rm)
    {
        const char *state = json_string_value(json_object_get(rm, "state"));
        for (size_t k = 0; state != NULL && k < ARRAY_SIZE(states); k++)
            count[k] += strcmp(state, states[k]) == 0;
        json_t *st;
        size_t j;
        json_array_foreach(json_object_get(rm, "streams"), j, st)
        {
            behind += (uint64_t)json_integer_value(json_object_get(st, "entries_behind"));
            double l = json_number_value(json_object_get(st, "lag_seconds"));
            lag = l > lag ? l : lag;
        }
    }
    size_t n = json_array_size(json_object_get(doc, "readmodels"));
    json_decref(doc);
    int at = snprintf(buf, size, "%zu read model%s:", n, n == 1 ? "" : "s");
    const char *sep = " ";
    for (size_t k = 0; k < ARRAY_SIZE(states); k++) {
        if (count[k] == 0 || at < 0 || (size_t)at >= size)
            continue;
        at += snprintf(buf + at, size - (size_t)at, "%s%zu %s", sep, count[k], states[k]);
        sep = ", ";
    }
    if (at >= 0 && (size_t)at < size)
        snprintf(buf + at, size - (size_t)at, "; %llu entries behind, lag %.1f s",
                 (unsigned long long)behind, lag);
    return count[0] == 0;
}

/* True when every worker's loop turned within half the watchdog interval. */
static bool workers_alive(const Daemon *d)
{
    int64_t now = now_monotonic_ms();
    for (size_t i = 0; d->workers != NULL && i < d->set->count; i++)
        if (now - worker_heartbeat_ms(d->workers[i]) > d->watchdog_ms / 2)
            return false;
    return true;
}

/* One beat of the main loop: the status line, READY once every read model has started,
 * and the watchdog's keep-alive while the workers are alive. */
static void tell_manager(Daemon *d)
{
    char status[256];
    bool started = status_line(d->board, status, sizeof status);
    if (started && !d->ready) {
        notify_ready(status);
        d->ready = true;
    } else {
        notify_status(status);
    }
    if (d->watchdog_ms > 0 && workers_alive(d))
        notify_watchdog();
}

static int serve_until_stopped(Daemon *d)
{
    int tick = TICK_MS;
    if (d->watchdog_ms > 0 && d->watchdog_ms / 4 < tick)
        tick = (int)(d->watchdog_ms / 4 > 0 ? d->watchdog_ms / 4 : 1);
    for (;;) {
        tell_manager(d);
        int sig = wait_signal(d, tick);
        if (is_stop_signal(sig)) {
            notify_stopping();
            log_info(NULL, "received %s, finishing the batches in flight", strsignal(sig));
            return 0;
        }
        if (sig == SIGHUP) {
            notify_reloading();
            d->ready = false; /* READY again once the reloaded read models have started */
            int code = reload(d);
            if (code != 0)
                return code == STOPPED_WHILE_WAITING ? 0 : code;
        }
    }
}

int daemon_run(const Config *cfg, ModelSet *set, const DaemonReload *again)
{
    Daemon d = {.cfg = cfg,
                .set = set,
                .listener = -1,
                .watchdog_ms = notify_watchdog_ms(),
                .again = again};
    atomic_init(&d.stop, false);
    /* Block the signals before any thread starts, so only sigwait here sees them. */
    sigemptyset(&d.signals);
    sigaddset(&d.signals, SIGTERM);
    sigaddset(&d.signals, SIGINT);
    sigaddset(&d.signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &d.signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    int code = prepare_database(&d);
    if (code == 0 && (code = start_serving(&d)) == 0)
        code = serve_until_stopped(&d);
    stop_serving(&d, false);
    if (d.listener >= 0)
        close(d.listener); /* a reload stopped while it waited for PostgreSQL */
    model_set_free(d.set);
    d.tally = board_tally_free(d.tally);
    log_info(NULL, "exiting");
    return code == STOPPED_WHILE_WAITING ? 0 : code;
}
