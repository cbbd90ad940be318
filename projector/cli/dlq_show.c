/* dlq_show.c - the read-only subcommands: `dlq list` (a table fitted to the terminal,
 * errors cut to fit) and `dlq show` (every field, the raw entry and its decoded event).
 * Neither changes a row.
 */
#include "cli/dlq.h"
#include "cli/dlq_internal.h"

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "sink/migrations.h"

/* The error column never gets narrower than this, however narrow the terminal. */
#define DLQ_ERROR_WIDTH_MIN 24

/* ---- output helpers ---- */

/* What a cell shows of text: line breaks and tabs (later spaces) as they are, other
 * control characters made visible. Caller frees. */
static char *cell_text(const char *text)
{
    StrBuf visible = {0};
    strbuf_append(&visible, "");
    strbuf_append_visible(&visible, text, true);
    return strbuf_take(&visible);
}

static size_t cell_width(const char *text)
{
    char *s = cell_text(text);
    size_t n = utf8_length(s);
    free(s);
    return n;
}

/* Writes text on one line, at most width characters, ending in "..." when cut short; pads
 * to width when pad is set. Line breaks and tabs become spaces, other control characters
 * are made visible (cell_text). */
static void put_cell(FILE *out, const char *text, size_t width, bool pad)
{
    char *s = cell_text(text);
    size_t total = utf8_length(s), n = 0;
    bool cut = total > width;
    assert(!cut || width > 3); /* only the error column is cut, and it is never that narrow */
    size_t keep = cut ? width - 3 : total;
    for (const char *p = s; *p != '\0'; p++) {
        if (((unsigned char)*p & 0xC0) != 0x80 && n++ == keep)
            break;
        fputc(*p == '\n' || *p == '\r' || *p == '\t' ? ' ' : *p, out);
    }
    if (cut)
        fputs("...", out);
    for (size_t w = cut ? width : total; pad && w < width; w++)
        fputc(' ', out);
    free(s);
}

/* The width to fit: the terminal's when out is one, else $COLUMNS, else 0 (no limit: a
 * pipe or a file gets every error whole). */
static size_t output_width(FILE *out)
{
    struct winsize ws;
    if (isatty(fileno(out)) && ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    const char *cols = getenv("COLUMNS");
    long v = cols != NULL ? strtol(cols, NULL, 10) : 0;
    return v > 0 && v < 100000 ? (size_t)v : 0;
}

/* ---- list ---- */

#define LIST_COLUMNS 9

static const char *const list_headers[LIST_COLUMNS] = {
    "ID",       "READMODEL",         "STREAM",   "ENTRY", "TYPE",
    "ATTEMPTS", "LAST FAILED (UTC)", "SQLSTATE", "ERROR"};

static const char list_sql[] =
    "SELECT id, readmodel, stream, entry_id, event_type, attempts, "
    "to_char(last_failed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), sqlstate, error "
    "FROM :\"schema\".dead_letters WHERE $1::text IS NULL OR readmodel = $1 ORDER BY id";

static void print_list(const PGresult *res, FILE *out)
{
    size_t widths[LIST_COLUMNS], used = 0, nrows = (size_t)PQntuples(res);
    for (int c = 0; c < LIST_COLUMNS - 1; c++) {
        widths[c] = utf8_length(list_headers[c]);
        for (int r = 0; r < PQntuples(res); r++) {
            size_t w = cell_width(dlq_value_or(res, r, c, "-"));
            widths[c] = w > widths[c] ? w : widths[c];
        }
        used += widths[c] + 2;
    }
    size_t width = output_width(out);
    if (width == 0)
        widths[LIST_COLUMNS - 1] = SIZE_MAX;
    else
        widths[LIST_COLUMNS - 1] =
            width > used + DLQ_ERROR_WIDTH_MIN ? width - used : DLQ_ERROR_WIDTH_MIN;
    for (int r = -1; r < PQntuples(res); r++) {
        for (int c = 0; c < LIST_COLUMNS; c++) {
            const char *s = r < 0 ? list_headers[c] : dlq_value_or(res, r, c, "-");
            put_cell(out, s, widths[c], c < LIST_COLUMNS - 1);
            fputs(c < LIST_COLUMNS - 1 ? "  " : "\n", out);
        }
    }
    fprintf(out, "(%zu dead letter%s)\n", nrows, nrows == 1 ? "" : "s");
}

int dlq_list(Pg *pg, const Config *cfg, const DlqArgs *a, FILE *out, PjError *err)
{
    char *sql = migrations_render(list_sql, cfg->pg_schema);
    const char *params[] = {a->readmodel};
    PGresult *res;
    int rc = pg_query(pg, sql, 1, params, &res, err);
    free(sql);
    if (rc < 0)
        return rc;
    if (PQntuples(res) == 0)
        dlq_print_none(out, a->readmodel);
    else
        print_list(res, out);
    PQclear(res);
    return 0;
}

/* Prints a JSON value indented by two spaces. */
/* JSON escapes C0 in strings itself; DEL and C1 it leaves as they are. */
static void print_pretty_json(FILE *out, const json_t *value)
{
    char *text = json_dumps(value, JSON_INDENT(2) | JSON_ENCODE_ANY);
    dlq_put_text(out, text != NULL ? text : "null", true);
    fputc('\n', out);
    free(text);
}

/* ---- show ---- */

static const char show_sql[] =
    "SELECT id, readmodel, stream, entry_id, event_type, attempts, "
    "to_char(first_failed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
    "to_char(last_failed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
    "sqlstate, error, raw::text FROM :\"schema\".dead_letters WHERE id = $1";

static void print_event(FILE *out, const PGresult *res, const Config *cfg)
{
    PjError err;
    json_t *event = NULL;
    json_t *raw = json_loads(PQgetvalue(res, 0, 10), 0, NULL);
    fputs("raw entry:\n", out);
    if (raw != NULL)
        print_pretty_json(out, raw);
    else {
        dlq_put_text(out, PQgetvalue(res, 0, 10), false);
        fputc('\n', out);
    }
    json_decref(raw);
    if (dlq_decode_raw(PQgetvalue(res, 0, 10), PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 3),
                       cfg->event_field, &event, &err) < 0) {
        fputs("event: cannot be decoded: ", out);
        dlq_put_text(out, err.message, false);
        fputc('\n', out);
        return;
    }
    fputs("event (as read models see it):\n", out);
    print_pretty_json(out, event);
    json_decref(event);
}

static void print_show(FILE *out, const PGresult *res, const Config *cfg)
{
    static const char *const labels[] = {
        "id:",       "read model:",   "stream:",      "entry:",    "event type:",
        "attempts:", "first failed:", "last failed:", "sqlstate:", "error:"};
    for (int c = 0; c < (int)ARRAY_SIZE(labels); c++) {
        fprintf(out, "%-14s", labels[c]);
        dlq_put_text(out, dlq_value_or(res, 0, c, "-"), false);
        fputc('\n', out);
    }
    print_event(out, res, cfg);
}

int dlq_show(Pg *pg, const Config *cfg, const DlqArgs *a, FILE *out, PjError *err)
{
    char id[DLQ_ID_BUFSZ];
    PGresult *res;
    int rc = dlq_query_letter(pg, cfg, show_sql, a->id, id, &res, err);
    if (rc < 0)
        return rc;
    print_show(out, res, cfg);
    PQclear(res);
    return 0;
}
