/* dlq.c - the dead-letter tooling: parse `dlq` arguments, then list, show, retry or
 * discard rows of <schema>.dead_letters.
 *
 * Owns one PostgreSQL session per run and, for retry, the applier plans of the read models
 * it meets, prepared on that session under names of its own. Invariant of retry: the
 * statements of a dead letter run in the transaction that holds the row's lock and
 * deletes it, so a dead letter is applied once or not at all.
 */
#include "cli/dlq.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "apply/applier.h"
#include "apply/event.h"
#include "sink/migrations.h"
#include "sink/pg.h"

#define DLQ_ERROR_WIDTH_MIN 24

/* ---- arguments ---- */

static int parse_id(const char *s, int64_t *ret, PjError *err)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || v <= 0)
        return pj_error_set(err, PJ_EINVAL,
                            "invalid dead-letter ID \"%s\": expected a positive integer", s);
    *ret = (int64_t)v;
    return 0;
}

static int parse_action(const char *s, DlqAction *ret, PjError *err)
{
    static const char *const names[] = {"list", "show", "retry", "discard"};
    static const DlqAction actions[] = {DLQ_LIST, DLQ_SHOW, DLQ_RETRY, DLQ_DISCARD};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        if (strcmp(s, names[i]) == 0) {
            *ret = actions[i];
            return 0;
        }
    }
    return pj_error_set(err, PJ_EINVAL,
                        "unknown dlq command \"%s\": expected list, show, retry or discard", s);
}

/* One word after the subcommand; *i moves past an option's value. */
static int parse_word(int argc, const char *const *argv, int *i, DlqArgs *a, bool *has_id,
                      PjError *err)
{
    const char *s = argv[*i];
    if (strcmp(s, "--all") == 0) {
        a->all = true;
    } else if (strcmp(s, "--readmodel") == 0) {
        if (++*i >= argc)
            return pj_error_set(err, PJ_EINVAL, "option \"--readmodel\" needs a read-model name");
        a->readmodel = argv[*i];
    } else if (strncmp(s, "--readmodel=", 12) == 0) {
        a->readmodel = s + 12;
    } else if (s[0] == '-' && s[1] != '\0') {
        return pj_error_set(err, PJ_EINVAL, "unrecognized option \"%s\" for \"dlq\"", s);
    } else if (*has_id) {
        return pj_error_set(err, PJ_EINVAL, "unexpected argument \"%s\"", s);
    } else {
        *has_id = true;
        return parse_id(s, &a->id, err);
    }
    return 0;
}

/* Which words each subcommand takes. */
static int check_combination(const DlqArgs *a, bool has_id, PjError *err)
{
    if (a->action == DLQ_LIST && has_id)
        return pj_error_set(err, PJ_EINVAL, "\"dlq list\" takes no ID");
    if (a->all && a->action != DLQ_RETRY)
        return pj_error_set(err, PJ_EINVAL, "option \"--all\" is only valid with \"dlq retry\"");
    if (a->action == DLQ_RETRY && a->all && has_id)
        return pj_error_set(err, PJ_EINVAL, "\"dlq retry\" takes an ID or --all, not both");
    if (a->readmodel != NULL && a->action != DLQ_LIST && !a->all)
        return pj_error_set(err, PJ_EINVAL,
                            "option \"--readmodel\" is only valid with \"dlq list\" and "
                            "\"dlq retry --all\"");
    if (a->readmodel != NULL && a->readmodel[0] == '\0')
        return pj_error_set(err, PJ_EINVAL, "option \"--readmodel\" needs a read-model name");
    if (a->action != DLQ_LIST && !a->all && !has_id)
        return pj_error_set(err, PJ_EINVAL, "\"dlq %s\" needs a dead-letter ID%s",
                            a->action == DLQ_SHOW    ? "show"
                            : a->action == DLQ_RETRY ? "retry"
                                                     : "discard",
                            a->action == DLQ_RETRY ? " or --all" : "");
    return 0;
}

int dlq_parse_args(int argc, const char *const *argv, DlqArgs *ret, PjError *err)
{
    DlqArgs a = {0};
    bool has_id = false;
    if (argc < 1)
        return pj_error_set(err, PJ_EINVAL,
                            "\"dlq\" needs a command: list, show, retry or discard");
    int rc = parse_action(argv[0], &a.action, err);
    for (int i = 1; rc == 0 && i < argc; i++)
        rc = parse_word(argc, argv, &i, &a, &has_id, err);
    if (rc == 0)
        rc = check_combination(&a, has_id, err);
    if (rc == 0)
        *ret = a;
    return rc;
}

bool dlq_needs_models(const DlqArgs *args)
{
    return args->action == DLQ_RETRY;
}

/* ---- output helpers ---- */

/* Characters, not bytes: UTF-8 continuation bytes do not count. */
static size_t text_width(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* Writes s on one line, at most width characters, ending in "..." when cut short; pads to
 * width when pad is set. Line breaks and tabs become spaces. */
static void put_cell(FILE *out, const char *s, size_t width, bool pad)
{
    size_t total = text_width(s), n = 0;
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

static const char *value_or(const PGresult *res, int row, int col, const char *dflt)
{
    return PQgetisnull(res, row, col) ? dflt : PQgetvalue(res, row, col);
}

/* "dead letter 7 (read model "orders", entry 1-0 of stream "orders", type "order.placed")";
 * type may be NULL (an entry that did not decode). */
static void print_letter(FILE *out, const char *id, const char *readmodel, const char *stream,
                         const char *entry_id, const char *type)
{
    fprintf(out, "dead letter %s (read model \"%s\", entry %s of stream \"%s\"", id, readmodel,
            entry_id, stream);
    if (type != NULL)
        fprintf(out, ", type \"%s\"", type);
    fputc(')', out);
}

static void print_none(FILE *out, const char *readmodel)
{
    if (readmodel != NULL)
        fprintf(out, "no dead letters for read model \"%s\"\n", readmodel);
    else
        fputs("no dead letters\n", out);
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
        widths[c] = text_width(list_headers[c]);
        for (int r = 0; r < PQntuples(res); r++) {
            size_t w = text_width(value_or(res, r, c, "-"));
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
            const char *s = r < 0 ? list_headers[c] : value_or(res, r, c, "-");
            put_cell(out, s, widths[c], c < LIST_COLUMNS - 1);
            fputs(c < LIST_COLUMNS - 1 ? "  " : "\n", out);
        }
    }
    fprintf(out, "(%zu dead letter%s)\n", nrows, nrows == 1 ? "" : "s");
}

static int dlq_list(Pg *pg, const Config *cfg, const DlqArgs *a, FILE *out, PjError *err)
{
    char *sql = migrations_render(list_sql, cfg->pg_schema);
    const char *params[] = {a->readmodel};
    PGresult *res;
    int rc = pg_query(pg, sql, 1, params, &res, err);
    free(sql);
    if (rc < 0)
        return rc;
    if (PQntuples(res) == 0)
        print_none(out, a->readmodel);
    else
        print_list(res, out);
    PQclear(res);
    return 0;
}

/* ---- raw entries ---- */

/* The fields of a raw entry ({"name": "value", ...}) as event_decode takes them. Strings
 * are borrowed from the JSON object; other values (never written by the daemon) are
 * passed as compact JSON text. */
typedef struct RawFields {
    EntryFields fields;
    const char **names, **values;
    size_t *name_lens, *value_lens;
    char **owned; /* the compact JSON texts */
    size_t nowned;
} RawFields;

static void raw_fields_init(RawFields *rf, json_t *raw)
{
    size_t n = json_object_size(raw), i = 0;
    const char *key;
    json_t *value;
    *rf = (RawFields){0};
    rf->names = xcalloc(n + 1, sizeof *rf->names);
    rf->values = xcalloc(n + 1, sizeof *rf->values);
    rf->name_lens = xcalloc(n + 1, sizeof *rf->name_lens);
    rf->value_lens = xcalloc(n + 1, sizeof *rf->value_lens);
    rf->owned = xcalloc(n + 1, sizeof *rf->owned);
    json_object_foreach(raw, key, value)
    {
        rf->names[i] = key;
        rf->name_lens[i] = strlen(key);
        if (json_is_string(value)) {
            rf->values[i] = json_string_value(value);
            rf->value_lens[i] = json_string_length(value);
        } else {
            char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
            rf->owned[rf->nowned++] = text != NULL ? text : xstrdup("");
            rf->values[i] = rf->owned[rf->nowned - 1];
            rf->value_lens[i] = strlen(rf->values[i]);
        }
        i++;
    }
    rf->fields = (EntryFields){.count = i,
                               .names = rf->names,
                               .name_lens = rf->name_lens,
                               .values = rf->values,
                               .value_lens = rf->value_lens};
}

static void raw_fields_done(RawFields *rf)
{
    for (size_t i = 0; i < rf->nowned; i++)
        free(rf->owned[i]);
    free(rf->owned);
    free(rf->names);
    free(rf->values);
    free(rf->name_lens);
    free(rf->value_lens);
}

/* The normalized event of a stored raw entry; -PJ_EPERMANENT with err set when the raw
 * text is not a JSON object or the entry does not decode. *ret is the caller's. */
static int decode_raw(const char *raw_text, const char *stream, const char *entry_id,
                      const char *event_field, json_t **ret, PjError *err)
{
    json_error_t jerr;
    json_t *raw = json_loads(raw_text, 0, &jerr);
    if (!json_is_object(raw)) {
        json_decref(raw);
        return pj_error_set(err, PJ_EPERMANENT, "the stored raw entry is not a JSON object");
    }
    RawFields rf;
    raw_fields_init(&rf, raw);
    int rc = event_decode(stream, entry_id, &rf.fields, event_field, ret, err);
    raw_fields_done(&rf);
    json_decref(raw);
    return rc;
}

/* Prints a JSON value indented by two spaces. */
static void print_pretty_json(FILE *out, const json_t *value)
{
    char *text = json_dumps(value, JSON_INDENT(2) | JSON_ENCODE_ANY);
    fprintf(out, "%s\n", text != NULL ? text : "null");
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
    else
        fprintf(out, "%s\n", PQgetvalue(res, 0, 10));
    json_decref(raw);
    if (decode_raw(PQgetvalue(res, 0, 10), PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 3),
                   cfg->event_field, &event, &err) < 0) {
        fprintf(out, "event: cannot be decoded: %s\n", err.message);
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
    for (int c = 0; c < (int)ARRAY_SIZE(labels); c++)
        fprintf(out, "%-14s%s\n", labels[c], value_or(res, 0, c, "-"));
    print_event(out, res, cfg);
}

static int dlq_show(Pg *pg, const Config *cfg, const DlqArgs *a, FILE *out, PjError *err)
{
    char id[24];
    snprintf(id, sizeof id, "%" PRId64, a->id);
    char *sql = migrations_render(show_sql, cfg->pg_schema);
    const char *params[] = {id};
    PGresult *res;
    int rc = pg_query(pg, sql, 1, params, &res, err);
    free(sql);
    if (rc < 0)
        return rc;
    if (PQntuples(res) == 0)
        rc = pj_error_set(err, PJ_ENOTFOUND, "dead letter %s does not exist", id);
    else
        print_show(out, res, cfg);
    PQclear(res);
    return rc;
}

/* ---- discard ---- */

static const char discard_sql[] = "DELETE FROM :\"schema\".dead_letters WHERE id = $1 "
                                  "RETURNING readmodel, stream, entry_id, event_type, error";

static int dlq_discard(Pg *pg, const Config *cfg, const DlqArgs *a, FILE *out, PjError *err)
{
    char id[24];
    snprintf(id, sizeof id, "%" PRId64, a->id);
    char *sql = migrations_render(discard_sql, cfg->pg_schema);
    const char *params[] = {id};
    PGresult *res;
    int rc = pg_query(pg, sql, 1, params, &res, err);
    free(sql);
    if (rc < 0)
        return rc;
    if (PQntuples(res) == 0)
        rc = pj_error_set(err, PJ_ENOTFOUND, "dead letter %s does not exist", id);
    else {
        fputs("discarded ", out);
        print_letter(out, id, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2),
                     value_or(res, 0, 3, NULL));
        fprintf(out, ": %s\n", PQgetvalue(res, 0, 4));
    }
    PQclear(res);
    return rc;
}

/* ---- retry ---- */

typedef enum { RETRY_APPLIED, RETRY_SKIPPED, RETRY_GONE, RETRY_FAILED } RetryOutcome;

typedef struct Retrier {
    const Config *cfg;
    const ModelSet *set;
    Pg *pg;
    FILE *out;
    ApplierPlan **plans; /* per model of set: compiled and prepared on first use, or NULL */
    Bound bound;
    unsigned counts[4]; /* per RetryOutcome */
} Retrier;

/* The dead-letter row as locked. Every string is owned; event_type may be NULL. */
typedef struct Letter {
    char id[24];
    char *readmodel, *stream, *entry_id, *event_type, *raw;
} Letter;

static void letter_done(Letter *l)
{
    free(l->readmodel);
    free(l->stream);
    free(l->entry_id);
    free(l->event_type);
    free(l->raw);
}

/* What failed and whether it was the event's fault (then the row counts an attempt). */
typedef struct Failure {
    PjError err;
    bool counts; /* the event failed, not the tooling or a server */
} Failure;

static char *statement_name(size_t model, const PlanStatement *st)
{
    return xasprintf("dlq%zu_%s", model, st->name);
}

/* The plan of model m, compiled and prepared on this session on first use. Each model's
 * statements get their own names: plans of different models reuse the same ones. */
static int retrier_plan(Retrier *r, size_t m, const ApplierPlan **ret, PjError *err)
{
    if (r->plans[m] == NULL) {
        ApplierPlan *plan = NULL;
        int rc = applier_plan_new(r->set, m, &plan, err);
        for (size_t i = 0; rc == 0 && i < applier_plan_count(plan); i++) {
            const PlanStatement *st = applier_plan_statement(plan, i);
            char *name = statement_name(m, st);
            rc = pg_prepare(r->pg, name, st->sql, st->nparams, err);
            free(name);
        }
        if (rc < 0) {
            applier_plan_free(plan);
            return rc;
        }
        r->plans[m] = plan;
    }
    *ret = r->plans[m];
    return 0;
}

static char *dup_or_null(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : xstrdup(PQgetvalue(res, row, col));
}

static const char lock_sql[] = "SELECT readmodel, stream, entry_id, event_type, raw::text "
                               "FROM :\"schema\".dead_letters WHERE id = $1 FOR UPDATE";

/* Inside the transaction: locks the row and reads it; *ret_found is false when it is gone
 * (retried or discarded by someone else meanwhile). */
static int letter_lock(Retrier *r, Letter *l, bool *ret_found, PjError *err)
{
    char *sql = migrations_render(lock_sql, r->cfg->pg_schema);
    const char *params[] = {l->id};
    PGresult *res;
    int rc = pg_query(r->pg, sql, 1, params, &res, err);
    free(sql);
    if (rc < 0)
        return rc;
    *ret_found = PQntuples(res) > 0;
    if (*ret_found) {
        l->readmodel = dup_or_null(res, 0, 0);
        l->stream = dup_or_null(res, 0, 1);
        l->entry_id = dup_or_null(res, 0, 2);
        l->event_type = dup_or_null(res, 0, 3);
        l->raw = dup_or_null(res, 0, 4);
    }
    PQclear(res);
    return 0;
}

static int exec_bound(Retrier *r, size_t m, const ApplierPlan *plan, Failure *f)
{
    for (size_t i = 0; i < r->bound.count; i++) {
        const BoundStatement *b = &r->bound.items[i];
        char *name = statement_name(m, applier_plan_statement(plan, b->statement));
        PGresult *res = PQexecPrepared(pg_conn(r->pg), name, b->nparams,
                                       (const char *const *)b->params, NULL, NULL, 0);
        free(name);
        ExecStatusType st = PQresultStatus(res);
        int rc = 0;
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
            rc = pg_result_error(r->pg, res, "could not apply", &f->err);
            f->counts = rc == -PJ_EPERMANENT;
        }
        PQclear(res);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Decodes the entry, binds it to the model's plan and runs the statements. Returns 0 with
 * *ret RETRY_APPLIED or RETRY_SKIPPED (the model does not handle the type), or <0 with f
 * filled. */
static int letter_apply(Retrier *r, const Letter *l, RetryOutcome *ret, Failure *f)
{
    int m = model_set_find(r->set, l->readmodel);
    const ApplierPlan *plan;
    json_t *event = NULL;
    if (m < 0)
        return pj_error_set(&f->err, PJ_ENOTFOUND,
                            "read model \"%s\" is not defined in \"%s\" any more", l->readmodel,
                            r->cfg->readmodels_dir);
    int rc = retrier_plan(r, (size_t)m, &plan, &f->err);
    if (rc < 0)
        return rc;
    rc = decode_raw(l->raw, l->stream, l->entry_id, r->cfg->event_field, &event, &f->err);
    if (rc == 0)
        rc = applier_bind(plan, event, &r->bound, &f->err);
    json_decref(event);
    if (rc < 0) {
        f->counts = true;
        return rc;
    }
    *ret = rc == APPLIER_UNHANDLED ? RETRY_SKIPPED : RETRY_APPLIED;
    return rc == APPLIER_UNHANDLED ? 0 : exec_bound(r, (size_t)m, plan, f);
}

static const char settle_sql[] = "DELETE FROM :\"schema\".dead_letters WHERE id = $1";
/* An applied dead letter counts as applied on its stream, like any other entry. */
static const char count_applied_sql[] =
    "UPDATE :\"schema\".checkpoints SET applied_total = applied_total + 1, updated_at = now() "
    "WHERE readmodel = $1 AND stream = $2";

/* Still inside the transaction: removes the row, counts the entry as applied, commits. */
static int letter_settle(Retrier *r, const Letter *l, RetryOutcome outcome, Failure *f)
{
    char *del = migrations_render(settle_sql, r->cfg->pg_schema);
    char *count = migrations_render(count_applied_sql, r->cfg->pg_schema);
    const char *id_param[] = {l->id};
    const char *ck_params[] = {l->readmodel, l->stream};
    int rc = pg_query(r->pg, del, 1, id_param, NULL, &f->err);
    if (rc == 0 && outcome == RETRY_APPLIED)
        rc = pg_query(r->pg, count, 2, ck_params, NULL, &f->err);
    if (rc == 0) {
        rc = pg_exec(r->pg, "COMMIT", &f->err);
        /* A deferred constraint of a read table fails here: the event's fault. */
        f->counts = rc == -PJ_EPERMANENT;
    }
    free(del);
    free(count);
    return rc;
}

static const char record_sql[] =
    "UPDATE :\"schema\".dead_letters SET attempts = attempts + 1, error = $2, sqlstate = $3, "
    "last_failed_at = now() WHERE id = $1 RETURNING attempts";

/* After the rollback, in a statement of its own: one more failed attempt. *ret_attempts
 * gets the new count (0 when the row has gone meanwhile). */
static int letter_record_failure(Retrier *r, const Letter *l, const Failure *f, long *ret_attempts,
                                 PjError *err)
{
    char *sql = migrations_render(record_sql, r->cfg->pg_schema);
    const char *state = f->err.sqlstate[0] != '\0' ? f->err.sqlstate : NULL;
    const char *params[] = {l->id, f->err.message, state};
    PGresult *res;
    int rc = pg_query(r->pg, sql, 3, params, &res, err);
    free(sql);
    if (rc < 0)
        return rc;
    *ret_attempts = PQntuples(res) > 0 ? strtol(PQgetvalue(res, 0, 0), NULL, 10) : 0;
    PQclear(res);
    return 0;
}

static void rollback(Retrier *r)
{
    PjError ignored;
    if (pg_exec(r->pg, "ROLLBACK", &ignored) < 0 && !pg_broken(r->pg))
        fprintf(r->out, "warning: could not roll back: %s\n", ignored.message);
}

static void print_head(Retrier *r, const Letter *l)
{
    if (l->readmodel == NULL)
        fprintf(r->out, "dead letter %s", l->id);
    else
        print_letter(r->out, l->id, l->readmodel, l->stream, l->entry_id, l->event_type);
}

static void report_failure(Retrier *r, const Letter *l, const Failure *f)
{
    long attempts = 0;
    PjError err;
    print_head(r, l);
    fprintf(r->out, ": failed: %s", f->err.message);
    if (f->err.sqlstate[0] != '\0')
        fprintf(r->out, " (SQLSTATE %s)", f->err.sqlstate);
    if (!f->counts)
        fputs(", not counted as an attempt\n", r->out);
    else if (letter_record_failure(r, l, f, &attempts, &err) < 0)
        fprintf(r->out, ", and could not record the attempt: %s\n", err.message);
    else
        fprintf(r->out, ", attempt %ld\n", attempts);
}

static void report_done(Retrier *r, const Letter *l, RetryOutcome outcome)
{
    print_head(r, l);
    if (outcome == RETRY_APPLIED)
        fputs(": applied\n", r->out);
    else if (outcome == RETRY_SKIPPED)
        fprintf(r->out, ": read model \"%s\" does not handle this type any more, removed\n",
                l->readmodel);
    else
        fputs(": not found, nothing done (retried or discarded already)\n", r->out);
}

/* The locked part: lock, apply, settle, in one transaction. */
static int retry_locked(Retrier *r, Letter *l, RetryOutcome *ret, Failure *f)
{
    bool found = false;
    int rc = pg_exec(r->pg, "BEGIN", &f->err);
    if (rc == 0)
        rc = letter_lock(r, l, &found, &f->err);
    if (rc == 0 && !found) {
        *ret = RETRY_GONE;
        rollback(r);
        return 0;
    }
    if (rc == 0)
        rc = letter_apply(r, l, ret, f);
    if (rc == 0)
        rc = letter_settle(r, l, *ret, f);
    return rc;
}

/* Retries one dead letter and prints its line. Returns <0 only when the session is gone
 * (nothing more can be done); a failed retry is an outcome. */
static int retry_one(Retrier *r, int64_t id, RetryOutcome *ret, PjError *err)
{
    Letter l = {0};
    Failure f = {0};
    snprintf(l.id, sizeof l.id, "%" PRId64, id);
    bound_reset(&r->bound);
    int rc = retry_locked(r, &l, ret, &f);
    if (rc < 0) {
        *ret = RETRY_FAILED;
        rollback(r);
        if (pg_broken(r->pg)) {
            letter_done(&l);
            return pj_error_set(err, PJ_ETRANSIENT, "%s", f.err.message);
        }
        report_failure(r, &l, &f);
    } else {
        report_done(r, &l, *ret);
    }
    r->counts[*ret]++;
    letter_done(&l);
    return 0;
}

static const char all_sql[] =
    "SELECT id FROM :\"schema\".dead_letters WHERE $1::text IS NULL OR readmodel = $1 "
    "ORDER BY entry_ms, entry_seq, id";

/* The ids to retry with --all, in stream order (a dead letter that depends on an earlier
 * one of its stream comes after it). */
static int retry_ids(Retrier *r, const DlqArgs *a, int64_t **ret, size_t *ret_n, PjError *err)
{
    char *sql = migrations_render(all_sql, r->cfg->pg_schema);
    const char *params[] = {a->readmodel};
    PGresult *res;
    int rc = pg_query(r->pg, sql, 1, params, &res, err);
    free(sql);
    if (rc < 0)
        return rc;
    *ret_n = (size_t)PQntuples(res);
    *ret = xcalloc(*ret_n + 1, sizeof **ret);
    for (size_t i = 0; i < *ret_n; i++)
        (*ret)[i] = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
    PQclear(res);
    return 0;
}

static int retry_summary(Retrier *r, size_t n, PjError *err)
{
    fprintf(r->out,
            "%zu dead letter%s: %u applied, %u removed (type not handled), %u failed, "
            "%u gone\n",
            n, n == 1 ? "" : "s", r->counts[RETRY_APPLIED], r->counts[RETRY_SKIPPED],
            r->counts[RETRY_FAILED], r->counts[RETRY_GONE]);
    if (r->counts[RETRY_FAILED] > 0)
        return pj_error_set(err, PJ_EPERMANENT, "%u of %zu dead letter%s could not be applied",
                            r->counts[RETRY_FAILED], n, n == 1 ? "" : "s");
    return 0;
}

static int dlq_retry(Pg *pg, const Config *cfg, const ModelSet *set, const DlqArgs *a, FILE *out,
                     PjError *err)
{
    Retrier r = {.cfg = cfg, .set = set, .pg = pg, .out = out};
    int64_t one = a->id, *ids = &one;
    size_t n = 1;
    int rc = 0;
    RetryOutcome outcome = RETRY_FAILED;
    if (a->all && (rc = retry_ids(&r, a, &ids, &n, err)) < 0)
        return rc;
    r.plans = xcalloc(set->count, sizeof *r.plans);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = retry_one(&r, ids[i], &outcome, err);
    if (rc == 0 && a->all && n == 0)
        print_none(out, a->readmodel);
    else if (rc == 0 && !a->all && outcome == RETRY_GONE)
        rc = pj_error_set(err, PJ_ENOTFOUND, "dead letter %" PRId64 " does not exist", a->id);
    else if (rc == 0)
        rc = retry_summary(&r, n, err);
    for (size_t m = 0; m < set->count; m++)
        applier_plan_free(r.plans[m]);
    free(r.plans);
    bound_done(&r.bound);
    if (a->all)
        free(ids);
    return rc;
}

/* ---- entry point ---- */

int dlq_run(const Config *cfg, const ModelSet *set, const DlqArgs *args, FILE *out, PjError *err)
{
    Pg *pg = NULL;
    int rc = pg_connect(cfg->pg_conninfo, &pg, err);
    if (rc < 0)
        return rc;
    switch (args->action) {
    case DLQ_LIST:
        rc = dlq_list(pg, cfg, args, out, err);
        break;
    case DLQ_SHOW:
        rc = dlq_show(pg, cfg, args, out, err);
        break;
    case DLQ_RETRY:
        rc = dlq_retry(pg, cfg, set, args, out, err);
        break;
    case DLQ_DISCARD:
        rc = dlq_discard(pg, cfg, args, out, err);
        break;
    }
    pg_free(pg);
    if (rc < 0 && strcmp(err->sqlstate, "42P01") == 0) {
        char detail[sizeof err->message];
        snprintf(detail, sizeof detail, "%s", err->message);
        return pj_error_set(err, -rc, "%s (run \"projector migrate\" to create schema \"%s\")",
                            detail, cfg->pg_schema);
    }
    return rc;
}
