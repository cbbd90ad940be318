/* dlq_retry.c - the subcommands that remove a dead letter: `dlq discard`, and `dlq retry`,
 * which re-applies it through the current read-model definition. Owns, for retry, the
 * applier plans of the read models it meets, prepared on the session under names of its
 * own. Invariant: the statements of a dead letter run in the transaction that holds the
 * row's lock and deletes it, so a dead letter is applied once or not at all.
 */
#include "cli/dlq.h"
#include "cli/dlq_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "apply/applier.h"
#include "sink/migrations.h"
#include "sink/refusal.h"

/* ---- discard ---- */

static const char discard_sql[] = "DELETE FROM :\"schema\".dead_letters WHERE id = $1 "
                                  "RETURNING readmodel, stream, entry_id, event_type, error";

int dlq_discard(Pg *pg, const Config *cfg, const DlqArgs *a, FILE *out, PjError *err)
{
    char id[DLQ_ID_BUFSZ];
    PGresult *res;
    int rc = dlq_query_letter(pg, cfg, discard_sql, a->id, id, &res, err);
    if (rc < 0)
        return rc;
    fputs("discarded ", out);
    dlq_print_letter(out, id, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2),
                     dlq_value_or(res, 0, 3, NULL));
    fputs(": ", out);
    dlq_put_text(out, PQgetvalue(res, 0, 4), false);
    fputc('\n', out);
    PQclear(res);
    return 0;
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
            refusal_name_column(plan, b, res, &f->err);
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
    rc = dlq_decode_raw(l->raw, l->stream, l->entry_id, r->cfg->event_field, &event, &f->err);
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
        dlq_print_letter(r->out, l->id, l->readmodel, l->stream, l->entry_id, l->event_type);
}

static void report_failure(Retrier *r, const Letter *l, const Failure *f)
{
    long attempts = 0;
    PjError err;
    print_head(r, l);
    fputs(": failed: ", r->out);
    dlq_put_text(r->out, f->err.message, false);
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

int dlq_retry(Pg *pg, const Config *cfg, const ModelSet *set, const DlqArgs *a, FILE *out,
              PjError *err)
{
    Retrier r = {.cfg = cfg, .set = set, .pg = pg, .out = out};
    int64_t one = a->id, *ids = &one;
    size_t n = 1;
    int rc = 0;
    RetryOutcome outcome = RETRY_FAILED;
    if (a->all && (rc = retry_ids(&r, a, &ids, &n, err)) < 0)
        return rc;
    r.plans = xcalloc(set->count, sizeof(ApplierPlan *));
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = retry_one(&r, ids[i], &outcome, err);
    if (rc == 0 && a->all && n == 0)
        dlq_print_none(out, a->readmodel);
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
