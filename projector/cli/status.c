/* status.c - the `projector status` table: per read model and stream, its state and the
 * reason for it (as the running daemon's /lag says; "-" when no daemon answers), the last
 * entry in Redis, the checkpoint, entries not yet applied, lag in seconds, dead letters.
 * Each server that cannot be reached is said in words, and the rest is still shown. An
 * aligned table (states coloured on a terminal), or JSON with --json.
 */
#include "cli/status.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http/http.h"
#include "os/now.h"
#include "sink/checkpoint.h"
#include "sink/pg.h"
#include "source/reader.h"

#define STATUS_DAEMON_TIMEOUT_MS 2000
#define STATUS_COLUMNS 9

static const char *const status_headers[STATUS_COLUMNS] = {
    "READMODEL", "STREAM", "STATE", "LAST ENTRY", "APPLIED", "BEHIND", "LAG(s)", "DEAD", "REASON"};

/* What the command could reach, each NULL or the reason it could not. */
typedef struct Reach {
    Pg *pg;
    Reader *redis;
    json_t *lag; /* the daemon's /lag, or NULL */
    char pg_error[1024], redis_error[1024], daemon_error[1024];
} Reach;

static void reach_servers(const Config *cfg, Reach *r)
{
    PjError err;
    if (pg_connect(cfg->pg_conninfo, &r->pg, &err) < 0)
        snprintf(r->pg_error, sizeof r->pg_error, "%s", err.message);
    if (reader_connect(&cfg->redis, cfg->connect_timeout_ms,
                       cfg->connect_timeout_ms + READER_REPLY_SLACK_MS, &r->redis, &err) < 0)
        snprintf(r->redis_error, sizeof r->redis_error, "%s", err.message);
    unsigned code = 0;
    char *body = NULL;
    if (http_get_local(cfg->http_listen, cfg->http_token, "/lag", STATUS_DAEMON_TIMEOUT_MS, &code,
                       &body, &err) < 0) {
        snprintf(r->daemon_error, sizeof r->daemon_error, "%s", err.message);
    } else if (code != 200 || (r->lag = json_loads(body, 0, NULL)) == NULL) {
        snprintf(r->daemon_error, sizeof r->daemon_error, "/lag on %s answered %u",
                 cfg->http_listen, code);
    }
    free(body);
}

static void reach_done(Reach *r)
{
    r->pg = pg_free(r->pg);
    r->redis = reader_free(r->redis);
    json_decref(r->lag);
}

/* The daemon's view of read model name: its /lag object, or NULL. */
static const json_t *daemon_model(const Reach *r, const char *name)
{
    size_t i;
    json_t *rm;
    json_array_foreach(json_object_get(r->lag, "readmodels"), i, rm)
    {
        if (strcmp(json_string_value(json_object_get(rm, "name")), name) == 0)
            return rm;
    }
    return NULL;
}

/* One read model's rows, as JSON: what each server could tell. */
static json_t *model_json(const Reach *r, const Config *cfg, const Model *m)
{
    StreamId *applied = xcalloc(m->nstreams, sizeof *applied);
    uint64_t *dead = xcalloc(m->nstreams, sizeof *dead);
    char *group = reader_group_name(m->name);
    PjError err;
    bool checkpoints = r->pg != NULL &&
                       checkpoint_load(r->pg, cfg->pg_schema, m, applied, NULL, &err) == 0 &&
                       checkpoint_count_dead(r->pg, cfg->pg_schema, m, dead, &err) == 0;
    const json_t *d = daemon_model(r, m->name);
    const char *state = d != NULL ? json_string_value(json_object_get(d, "state")) : NULL;
    const char *reason = d != NULL ? json_string_value(json_object_get(d, "reason")) : NULL;
    json_t *streams = json_array();
    for (size_t s = 0; s < m->nstreams; s++) {
        json_t *row = json_pack("{s:s}", "stream", m->streams[s]);
        StreamBacklog ls = {.oldest_unapplied_ms = -1};
        char id[STREAM_ID_BUFSZ];
        bool sampled = r->redis != NULL && checkpoints &&
                       reader_sample(r->redis, m->streams[s], group, applied[s], &ls, &err) == 0;
        if (!sampled && r->redis != NULL)
            ls.has_last_entry = reader_last_id(r->redis, m->streams[s], &ls.last_entry, &err) == 0;
        if (ls.has_last_entry)
            json_object_set_new(row, "last_entry_id",
                                json_string(stream_id_format(ls.last_entry, id)));
        if (checkpoints) {
            json_object_set_new(row, "last_applied_id",
                                json_string(stream_id_format(applied[s], id)));
            json_object_set_new(row, "dead_letters", json_integer((json_int_t)dead[s]));
        }
        if (sampled) {
            json_object_set_new(row, "entries_behind", json_integer((json_int_t)ls.entries_behind));
            json_object_set_new(row, "lag_seconds",
                                json_real(stream_backlog_lag_seconds(&ls, now_wall_ms())));
        }
        json_array_append_new(streams, row);
    }
    free(group);
    free(applied);
    free(dead);
    json_t *o = json_pack("{s:s, s:o}", "name", m->name, "streams", streams);
    json_object_set_new(o, "state", state != NULL ? json_string(state) : json_null());
    if (reason != NULL)
        json_object_set_new(o, "reason", json_string(reason));
    return o;
}

static json_t *reach_json(const char *error)
{
    return error[0] == '\0' ? json_string("ok") : json_string(error);
}

/* ---- the table ---- */

/* The text of column k of stream row st of read model rm ("-" for what is not known). */
static const char *cell(const json_t *rm, const json_t *st, int k, char *buf, size_t size)
{
    static const char *const fields[STATUS_COLUMNS] = {
        "name",           "stream",      "state",        "last_entry_id", "last_applied_id",
        "entries_behind", "lag_seconds", "dead_letters", "reason"};
    const json_t *v = json_object_get(k == 0 || k == 2 || k == 8 ? rm : st, fields[k]);
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_integer(v))
        snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, size, "%.1f", json_real_value(v));
    else
        snprintf(buf, size, "-");
    return buf;
}

static const char *state_colour(const char *state)
{
    if (strcmp(state, "running") == 0)
        return "\033[32m";
    if (strcmp(state, "stopped") == 0)
        return "\033[31m";
    return strcmp(state, "-") == 0 ? "" : "\033[33m";
}

/* Widens width[] to the cells of one row. */
static void measure_row(const json_t *rm, const json_t *st, size_t *width)
{
    char buf[64];
    for (int k = 0; k < STATUS_COLUMNS; k++) {
        size_t n = strlen(cell(rm, st, k, buf, sizeof buf));
        width[k] = n > width[k] ? n : width[k];
    }
}

static void print_row(const json_t *rm, const json_t *st, const size_t *width, bool colour,
                      FILE *out)
{
    char buf[64];
    for (int k = 0; k < STATUS_COLUMNS; k++) {
        const char *text = cell(rm, st, k, buf, sizeof buf);
        bool paint = colour && k == 2, last = k + 1 == STATUS_COLUMNS;
        bool right = k >= 5 && k <= 7; /* the numbers */
        fputs(paint ? state_colour(text) : "", out);
        if (last)
            fputs(text, out);
        else
            fprintf(out, right ? "%*s" : "%-*s", (int)width[k], text);
        fputs(paint ? "\033[0m" : "", out);
        fputs(last ? "\n" : "  ", out);
    }
}

static void print_table(const json_t *doc, FILE *out, bool colour)
{
    size_t width[STATUS_COLUMNS], i, j;
    json_t *rm, *st;
    const json_t *rms = json_object_get(doc, "readmodels");
    for (int k = 0; k < STATUS_COLUMNS; k++)
        width[k] = strlen(status_headers[k]);
    json_array_foreach(rms, i, rm)
    {
        json_array_foreach(json_object_get(rm, "streams"), j, st)
        {
            measure_row(rm, st, width);
        }
    }
    for (int k = 0; k < STATUS_COLUMNS; k++)
        fprintf(out, k + 1 < STATUS_COLUMNS ? "%-*s  " : "%.*s%s\n", (int)width[k],
                k + 1 < STATUS_COLUMNS ? status_headers[k] : "", status_headers[k]);
    json_array_foreach(rms, i, rm)
    {
        json_array_foreach(json_object_get(rm, "streams"), j, st)
        {
            print_row(rm, st, width, colour, out);
        }
    }
}

static void print_unreached(const Reach *r, FILE *out)
{
    if (r->pg_error[0] != '\0')
        fprintf(out, "PostgreSQL cannot be reached: %s\n", r->pg_error);
    if (r->redis_error[0] != '\0')
        fprintf(out, "Redis cannot be reached: %s\n", r->redis_error);
    if (r->daemon_error[0] != '\0')
        fprintf(out, "the daemon does not answer (%s): states unknown\n", r->daemon_error);
}

int status_print(const Config *cfg, const ModelSet *set, bool json, FILE *out, PjError *err)
{
    Reach r = {0};
    reach_servers(cfg, &r);
    json_t *rms = json_array();
    for (size_t i = 0; i < set->count; i++)
        json_array_append_new(rms, model_json(&r, cfg, &set->models[i]));
    json_t *doc =
        json_pack("{s:o, s:o, s:o, s:o}", "readmodels", rms, "postgres", reach_json(r.pg_error),
                  "redis", reach_json(r.redis_error), "daemon", reach_json(r.daemon_error));
    if (json) {
        char *text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
        fprintf(out, "%s\n", text);
        free(text);
    } else {
        print_table(doc, out, isatty(fileno(out)));
        print_unreached(&r, out);
    }
    json_decref(doc);
    int rc = 0;
    if (r.pg_error[0] != '\0' || r.redis_error[0] != '\0')
        rc = pj_error_set(err, PJ_ETRANSIENT, "%s cannot be reached",
                          r.pg_error[0] != '\0' ? "PostgreSQL" : "Redis");
    reach_done(&r);
    return rc;
}
