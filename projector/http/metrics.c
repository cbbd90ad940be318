/* metrics.c - renders the /lag document as Prometheus text (exposition format 0.0.4).
 *
 * Owns the metric names, their types and help texts, and label escaping. Every family is
 * written as one block (HELP, TYPE, then all its samples), as the format requires. The
 * HTTP server's own counters come in an optional "http" object of the same document, the
 * board's batches, retries, sessions and histograms in an optional "stats" object
 * (board_metrics_json); no configuration value (address, password, token) is ever part of
 * the exposition.
 */
#include <stdio.h>
#include <string.h>

#include "board/board.h"
#include "http/metrics.h"

typedef enum { SCOPE_READMODEL, SCOPE_STREAM } MetricScope;

typedef struct MetricFamily {
    const char *name;
    const char *type;
    const char *help;
    const char *field; /* in the read model (SCOPE_READMODEL) or stream object */
    MetricScope scope;
    double scale;
} MetricFamily;

static const MetricFamily metric_families[] = {
    {"projector_events_applied_total", "counter", "Events applied to the read table.", "applied",
     SCOPE_STREAM, 1.0},
    {"projector_events_skipped_total", "counter",
     "Events acknowledged without effect because the read model does not handle their type.",
     "skipped", SCOPE_STREAM, 1.0},
    {"projector_dead_letters_total", "counter",
     "Events this process wrote to the dead-letter table.", "dead_lettered", SCOPE_STREAM, 1.0},
    {"projector_dead_letters_open", "gauge",
     "Dead letters of the stream in the table now (retry and discard lower it).", "dead_letters",
     SCOPE_STREAM, 1.0},
    {"projector_lag_entries", "gauge", "Entries of the stream not yet applied.", "entries_behind",
     SCOPE_STREAM, 1.0},
    {"projector_lag_seconds", "gauge", "Age of the oldest entry not yet applied.", "lag_seconds",
     SCOPE_STREAM, 1.0},
    {"projector_checkpoint_ahead", "gauge",
     "1 when the checkpoint is past the stream's last entry (Redis restored behind "
     "PostgreSQL, or a failover lost entries).",
     "checkpoint_ahead", SCOPE_STREAM, 1.0},
    {"projector_last_poll_age_seconds", "gauge", "Time since the worker last polled Redis.",
     "last_poll_age_ms", SCOPE_READMODEL, 0.001},
};

static void append_label(StrBuf *sb, const char *name, const char *value)
{
    strbuf_appendf(sb, "%s=\"", name);
    for (const char *p = value; *p; p++) {
        if (*p == '\\')
            strbuf_append(sb, "\\\\");
        else if (*p == '"')
            strbuf_append(sb, "\\\"");
        else if (*p == '\n')
            strbuf_append(sb, "\\n");
        else
            strbuf_appendn(sb, p, 1);
    }
    strbuf_append(sb, "\"");
}

static void append_header(StrBuf *sb, const char *name, const char *type, const char *help)
{
    strbuf_appendf(sb, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void append_value(StrBuf *sb, const json_t *v, double scale)
{
    if (json_is_boolean(v))
        strbuf_append(sb, json_is_true(v) ? " 1\n" : " 0\n");
    else if (json_is_integer(v) && scale == 1.0)
        strbuf_appendf(sb, " %lld\n", (long long)json_integer_value(v));
    else
        strbuf_appendf(sb, " %.10g\n", json_number_value(v) * scale);
}

static const char *string_field(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

static void append_family(StrBuf *sb, const MetricFamily *f, const json_t *rms)
{
    size_t i, j;
    json_t *rm, *stream;

    append_header(sb, f->name, f->type, f->help);
    json_array_foreach(rms, i, rm)
    {
        const char *name = string_field(rm, "name");
        if (f->scope == SCOPE_READMODEL) {
            const json_t *v = json_object_get(rm, f->field);
            if (!json_is_number(v))
                continue; /* never polled: no sample rather than a made-up age */
            strbuf_appendf(sb, "%s{", f->name);
            append_label(sb, "readmodel", name);
            strbuf_append(sb, "}");
            append_value(sb, v, f->scale);
            continue;
        }
        json_array_foreach(json_object_get(rm, "streams"), j, stream)
        {
            const json_t *v = json_object_get(stream, f->field);
            if (!json_is_number(v) && !json_is_boolean(v))
                continue;
            strbuf_appendf(sb, "%s{", f->name);
            append_label(sb, "readmodel", name);
            strbuf_append(sb, ",");
            append_label(sb, "stream", string_field(stream, "stream"));
            strbuf_append(sb, "}");
            append_value(sb, v, f->scale);
        }
    }
}

/* One sample per read model and state: 1 for the current state, 0 for the others. */
static void append_states(StrBuf *sb, const json_t *rms)
{
    size_t i;
    json_t *rm;

    append_header(sb, "projector_readmodel_state", "gauge",
                  "Current state of the read model (1 for the state it is in).");
    json_array_foreach(rms, i, rm)
    {
        const char *current = string_field(rm, "state");
        for (BoardState s = BOARD_STATE_STARTING; s <= BOARD_STATE_REBUILDING; s++) {
            strbuf_append(sb, "projector_readmodel_state{");
            append_label(sb, "readmodel", string_field(rm, "name"));
            strbuf_append(sb, ",");
            append_label(sb, "state", board_state_name(s));
            strbuf_appendf(sb, "} %d\n", strcmp(current, board_state_name(s)) == 0);
        }
    }
}

/* The server's counters: each one only when the document carries it. */
static void append_http(StrBuf *sb, const json_t *http)
{
    static const struct {
        const char *name, *field, *help;
    } counters[] = {
        {"projector_http_unauthorized_total", "unauthorized",
         "Requests refused with 401 for a missing or wrong bearer token."},
        {"projector_http_waits_refused_total", "waits_refused",
         "/wait requests refused with 503 because http.max_waiters were waiting."},
        {"projector_http_requests_too_large_total", "too_large",
         "Requests refused with 414 or 431: over http.max_request_bytes, or with more fields "
         "than its memory holds."},
        {"projector_http_header_timeouts_total", "header_timeouts",
         "Connections closed because a request head did not arrive, or its answer did not "
         "leave, within http.header_timeout_ms."},
        {"projector_http_evictions_total", "evictions",
         "Idle connections closed to keep http.reserved_connections free."},
    };

    for (size_t i = 0; i < ARRAY_SIZE(counters); i++) {
        const json_t *v = json_object_get(http, counters[i].field);
        if (!json_is_integer(v))
            continue;
        append_header(sb, counters[i].name, "counter", counters[i].help);
        strbuf_appendf(sb, "%s", counters[i].name);
        append_value(sb, v, 1.0);
    }
}

/* ---- the board's statistics ---- */

static void append_rm_label(StrBuf *sb, const char *name, const json_t *rm)
{
    strbuf_appendf(sb, "%s{", name);
    append_label(sb, "readmodel", string_field(rm, "name"));
}

static void append_le(StrBuf *sb, double bound)
{
    char le[32];
    snprintf(le, sizeof le, "%.10g", bound);
    strbuf_append(sb, ",");
    append_label(sb, "le", le);
}

/* One histogram family: cumulative buckets per read model, then _sum and _count. */
static void append_histogram(StrBuf *sb, const char *name, const char *help, const char *field,
                             const json_t *rms)
{
    size_t i;
    json_t *rm;
    char family[96];
    append_header(sb, name, "histogram", help);
    json_array_foreach(rms, i, rm)
    {
        const json_t *h = json_object_get(json_object_get(rm, "histograms"), field);
        const json_t *bounds = json_object_get(h, "bounds"), *counts = json_object_get(h, "counts");
        if (json_array_size(counts) != json_array_size(bounds) + 1)
            continue;
        uint64_t cumulative = 0;
        snprintf(family, sizeof family, "%s_bucket", name);
        for (size_t k = 0; k < json_array_size(counts); k++) {
            cumulative += (uint64_t)json_integer_value(json_array_get(counts, k));
            append_rm_label(sb, family, rm);
            if (k < json_array_size(bounds))
                append_le(sb, json_number_value(json_array_get(bounds, k)));
            else
                strbuf_append(sb, ",le=\"+Inf\"");
            strbuf_appendf(sb, "} %llu\n", (unsigned long long)cumulative);
        }
        snprintf(family, sizeof family, "%s_sum", name);
        append_rm_label(sb, family, rm);
        strbuf_append(sb, "}");
        append_value(sb, json_object_get(h, "sum"), 1.0);
        snprintf(family, sizeof family, "%s_count", name);
        append_rm_label(sb, family, rm);
        strbuf_append(sb, "}");
        append_value(sb, json_object_get(h, "count"), 1.0);
    }
}

static void append_retries(StrBuf *sb, const json_t *rms)
{
    size_t i;
    json_t *rm;
    append_header(sb, "projector_retries_total", "counter",
                  "Times a worker dropped its sessions to try again, by cause.");
    json_array_foreach(rms, i, rm)
    {
        for (int c = 0; c < BOARD_RETRY_COUNT; c++) {
            const char *cause = board_retry_cause_name((BoardRetryCause)c);
            append_rm_label(sb, "projector_retries_total", rm);
            strbuf_append(sb, ",");
            append_label(sb, "cause", cause);
            strbuf_append(sb, "}");
            append_value(sb, json_object_get(json_object_get(rm, "retries"), cause), 1.0);
        }
    }
}

static void append_connections(StrBuf *sb, const json_t *rms)
{
    static const char *const servers[][2] = {{"redis", "redis_up"}, {"postgres", "postgres_up"}};
    size_t i;
    json_t *rm;
    append_header(sb, "projector_connection_up", "gauge",
                  "1 while the read model's worker has its session to the server.");
    json_array_foreach(rms, i, rm)
    {
        for (size_t k = 0; k < ARRAY_SIZE(servers); k++) {
            append_rm_label(sb, "projector_connection_up", rm);
            strbuf_append(sb, ",");
            append_label(sb, "server", servers[k][0]);
            strbuf_append(sb, "}");
            append_value(sb, json_object_get(rm, servers[k][1]), 1.0);
        }
    }
}

static void append_stats(StrBuf *sb, const json_t *stats)
{
    const json_t *rms = json_object_get(stats, "readmodels");
    if (!json_is_array(rms))
        return;
    append_header(sb, "projector_batches_total", "counter", "Batches committed.");
    size_t i;
    json_t *rm;
    json_array_foreach(rms, i, rm)
    {
        append_rm_label(sb, "projector_batches_total", rm);
        strbuf_append(sb, "}");
        append_value(sb, json_object_get(rm, "batches"), 1.0);
    }
    append_retries(sb, rms);
    append_connections(sb, rms);
    append_histogram(sb, "projector_batch_size", "Entries per committed batch.", "batch_size", rms);
    append_histogram(sb, "projector_apply_duration_seconds",
                     "Time to commit a batch, from its first statement sent.", "apply_seconds",
                     rms);
    append_histogram(sb, "projector_end_to_end_latency_seconds",
                     "From the time in an entry's ID to the commit that settled it.",
                     "end_to_end_seconds", rms);
}

char *metrics_render(const json_t *lag, size_t wait_pending)
{
    StrBuf sb = {0};
    const json_t *rms = json_object_get(lag, "readmodels");

    append_header(&sb, "projector_up", "gauge", "1 while the daemon is serving.");
    strbuf_append(&sb, "projector_up 1\n");
    append_header(&sb, "projector_build_info", "gauge", "The version of the daemon, as a label.");
    strbuf_append(&sb, "projector_build_info{");
    append_label(&sb, "version", PROJECTOR_VERSION);
    strbuf_append(&sb, "} 1\n");
    append_states(&sb, rms);
    for (size_t i = 0; i < ARRAY_SIZE(metric_families); i++)
        append_family(&sb, &metric_families[i], rms);
    append_header(&sb, "projector_wait_pending", "gauge", "/wait requests waiting for an entry.");
    strbuf_appendf(&sb, "projector_wait_pending %zu\n", wait_pending);
    append_http(&sb, json_object_get(lag, "http"));
    append_stats(&sb, json_object_get(lag, "stats"));
    return strbuf_take(&sb);
}
