/* pg.c - libpq session, SQLSTATE classification and the pipelined batch.
 *
 * Owns the PGconn, the names of the statements prepared on it, and the tags of the
 * statements queued in the current pipeline. A pipeline runs in non-blocking mode while it
 * is being flushed, reading results as they come, so a large batch cannot deadlock with
 * the server's output buffer.
 */
#include "sink/pg.h"

#include "base/log.h"

#include <assert.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

struct Pg {
    PGconn *conn;
    char **prepared; /* names of statements prepared on conn */
    size_t nprepared, prepared_cap;
    long *tags; /* the tag of each statement queued in the pipeline */
    size_t ntags, tags_cap;
    bool send_failed;
};

static const char *const transient_prefixes[] = {"08",    "53",    "57P0", "40001",
                                                 "40P01", "55P03", "58"};

bool pg_is_transient_sqlstate(const char *sqlstate)
{
    if (sqlstate == NULL || sqlstate[0] == '\0')
        return true; /* no SQLSTATE: the connection itself failed */
    for (size_t i = 0; i < ARRAY_SIZE(transient_prefixes); i++)
        if (strncmp(sqlstate, transient_prefixes[i], strlen(transient_prefixes[i])) == 0)
            return true;
    return false;
}

/* libpq messages end with a newline and may hold more, indented with tabs; make them
 * one line so logs, /lag reasons and dead letters stay one line each. */
static void chomp(char *s)
{
    char *out = s;
    for (const char *p = s; *p != '\0'; p++) {
        bool space = *p == '\n' || *p == '\t' || *p == '\r' || *p == ' ';
        if (!space || (out > s && out[-1] != ' '))
            *out++ = space ? ' ' : *p;
    }
    while (out > s && out[-1] == ' ')
        out--;
    *out = '\0';
}

/* Server notices ("relation already exists, skipping") are not the operator's business. */
static void notice_to_debug(void *arg, const char *message)
{
    (void)arg;
    log_debug(NULL, "postgres: %s", message);
}

int pg_connect(const char *conninfo, Pg **ret, PjError *err)
{
    Pg *pg = xcalloc(1, sizeof *pg);
    pg->conn = PQconnectdb(conninfo);
    if (PQstatus(pg->conn) != CONNECTION_OK) {
        pj_error_set(err, PJ_ETRANSIENT, "could not connect to PostgreSQL: %s",
                     PQerrorMessage(pg->conn));
        chomp(err != NULL ? err->message : (char[1]){0});
        pg_free(pg);
        return -PJ_ETRANSIENT;
    }
    PQsetNoticeProcessor(pg->conn, notice_to_debug, NULL);
    /* Read tables are small-row OLTP targets: generic plans chosen on an empty table
     * would keep sequential scans as it grows. And a set-based statement joins the rows
     * of a batch (unnest of its arrays) to the table by its key: the planner, seeing
     * several hundred of them, would hash the whole table rather than look each one up. */
    PGresult *res = PQexec(pg->conn, "SET plan_cache_mode = force_custom_plan; "
                                     "SET enable_hashjoin = off; SET enable_mergejoin = off");
    PQclear(res);
    *ret = pg;
    return 0;
}

Pg *pg_free(Pg *pg)
{
    if (pg == NULL)
        return NULL;
    PQfinish(pg->conn);
    for (size_t i = 0; i < pg->nprepared; i++)
        free(pg->prepared[i]);
    free(pg->prepared);
    free(pg->tags);
    free(pg);
    return NULL;
}

PGconn *pg_conn(Pg *pg)
{
    return pg->conn;
}

bool pg_broken(Pg *pg)
{
    return PQstatus(pg->conn) != CONNECTION_OK;
}

int pg_result_error(Pg *pg, const PGresult *res, const char *what, PjError *err)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    if (primary == NULL)
        primary = PQerrorMessage(pg->conn);
    bool transient = pg_is_transient_sqlstate(state) || pg_broken(pg);
    int code = transient ? PJ_ETRANSIENT : PJ_EPERMANENT;
    pj_error_set(err, code, "%s: %s%s%s", what, primary, detail != NULL ? " (" : "",
                 detail != NULL ? detail : "");
    if (err != NULL) {
        if (detail != NULL)
            strncat(err->message, ")", sizeof err->message - strlen(err->message) - 1);
        chomp(err->message);
        snprintf(err->sqlstate, sizeof err->sqlstate, "%s", state != NULL ? state : "");
    }
    return -code;
}

void pg_error_place(PjError *err, const char *what, const char *place)
{
    size_t n = strlen(what);
    if (strncmp(err->message, what, n) != 0 || strncmp(err->message + n, ": ", 2) != 0)
        return;
    char sqlstate[sizeof err->sqlstate];
    char *rest = xstrdup(err->message + n + 2);
    memcpy(sqlstate, err->sqlstate, sizeof sqlstate);
    pj_error_set(err, err->code, "%s: %s: %s", what, place, rest);
    memcpy(err->sqlstate, sqlstate, sizeof sqlstate);
    free(rest);
}

static bool result_ok(const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

int pg_exec(Pg *pg, const char *sql, PjError *err)
{
    PGresult *res = PQexec(pg->conn, sql);
    int rc = result_ok(res) ? 0 : pg_result_error(pg, res, "could not run statement", err);
    PQclear(res);
    return rc;
}

int pg_query(Pg *pg, const char *sql, int nparams, const char *const *params, PGresult **ret,
             PjError *err)
{
    assert(pg != NULL && pg->conn != NULL && sql != NULL);
    assert(nparams >= 0 && (nparams == 0 || params != NULL));
    /* Not inside a pipeline: its results would be read here as this query's. */
    assert(PQpipelineStatus(pg->conn) == PQ_PIPELINE_OFF);
    PGresult *res = PQexecParams(pg->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    if (!result_ok(res)) {
        int rc = pg_result_error(pg, res, "could not run query", err);
        PQclear(res);
        return rc;
    }
    if (ret != NULL)
        *ret = res;
    else
        PQclear(res);
    return 0;
}

int pg_query_prepared(Pg *pg, const char *name, int nparams, const char *const *params,
                      PGresult **ret, PjError *err)
{
    assert(pg != NULL && pg->conn != NULL && name != NULL);
    assert(nparams >= 0 && (nparams == 0 || params != NULL));
    assert(PQpipelineStatus(pg->conn) == PQ_PIPELINE_OFF);
    PGresult *res = PQexecPrepared(pg->conn, name, nparams, params, NULL, NULL, 0);
    if (!result_ok(res)) {
        int rc = pg_result_error(pg, res, "could not run query", err);
        PQclear(res);
        return rc;
    }
    *ret = res;
    return 0;
}

int pg_prepare(Pg *pg, const char *name, const char *sql, int nparams, PjError *err)
{
    assert(pg != NULL && name != NULL && name[0] != '\0' && sql != NULL && nparams >= 0);
    for (size_t i = 0; i < pg->nprepared; i++)
        if (strcmp(pg->prepared[i], name) == 0)
            return 0;
    PGresult *res = PQprepare(pg->conn, name, sql, nparams, NULL);
    int rc = result_ok(res) ? 0 : pg_result_error(pg, res, "could not prepare statement", err);
    PQclear(res);
    if (rc == 0) {
        xgrow((void **)&pg->prepared, &pg->prepared_cap, pg->nprepared + 1, sizeof *pg->prepared);
        pg->prepared[pg->nprepared++] = xstrdup(name);
    }
    return rc;
}

int pg_pipeline_begin(Pg *pg, PjError *err)
{
    assert(PQpipelineStatus(pg->conn) == PQ_PIPELINE_OFF);
    pg->ntags = 0;
    pg->send_failed = false;
    if (PQenterPipelineMode(pg->conn) != 1 || PQsetnonblocking(pg->conn, 1) != 0)
        return pg_result_error(pg, NULL, "could not enter pipeline mode", err);
    return 0;
}

void pg_pipeline_send(Pg *pg, const char *name, int nparams, const char *const *params, long tag)
{
    assert(PQpipelineStatus(pg->conn) != PQ_PIPELINE_OFF);
    assert(nparams >= 0 && (nparams == 0 || params != NULL));
    if (pg->send_failed)
        return;
    if (PQsendQueryPrepared(pg->conn, name, nparams, params, NULL, NULL, 0) != 1) {
        pg->send_failed = true;
        return;
    }
    xgrow((void **)&pg->tags, &pg->tags_cap, pg->ntags + 1, sizeof *pg->tags);
    pg->tags[pg->ntags++] = tag;
}

/* Flushes the output, reading input meanwhile so the server never blocks on us. */
static int flush_all(Pg *pg)
{
    int r;
    while ((r = PQflush(pg->conn)) == 1) {
        struct pollfd p = {.fd = PQsocket(pg->conn), .events = POLLIN | POLLOUT};
        if (poll(&p, 1, 30000) <= 0)
            return -1;
        if ((p.revents & POLLIN) && PQconsumeInput(pg->conn) != 1)
            return -1;
    }
    return r;
}

/* A Sync in the middle of a pipeline, among the tags: it ends a segment. */
#define TAG_SYNC LONG_MIN

/* The failure of one statement of a pipeline: the first of the pipeline decides the
 * outcome (*first_rc, *first_err, *first_tag); with segments, on_failure hears the first
 * of each. */
typedef struct Outcome {
    PgFailureFn *on_failure;
    void *arg;
    int rc;
    long failed_tag;
    PjError *err;
    bool segment_failed;
} Outcome;

static void note_failure(Pg *pg, Outcome *o, const PGresult *res, long tag)
{
    PjError e;
    int rc = pg_result_error(pg, res, "could not apply", &e);
    if (o->on_failure != NULL && !o->segment_failed && rc == -PJ_EPERMANENT)
        o->on_failure(o->arg, tag, &e, res);
    o->segment_failed = true;
    if (o->rc == 0 || (rc == -PJ_ETRANSIENT && o->rc == -PJ_EPERMANENT && o->on_failure != NULL)) {
        o->rc = rc; /* with segments, a transient failure anywhere outweighs refusals */
        o->failed_tag = tag;
        if (o->err != NULL)
            *o->err = e;
    }
}

/* Reads the Sync that ends a segment (or the pipeline); a missing one is the outcome unless
 * a statement failed before it. */
static int read_sync(Pg *pg, Outcome *o)
{
    PGresult *sync = PQgetResult(pg->conn);
    int rc = 0;
    if (sync == NULL || PQresultStatus(sync) != PGRES_PIPELINE_SYNC) {
        PjError e;
        rc = pg_result_error(pg, sync, "could not commit", &e);
        if (o->rc == 0) {
            o->rc = rc;
            if (o->err != NULL)
                *o->err = e;
        }
    }
    PQclear(sync);
    o->segment_failed = false;
    return rc;
}

/* Reads the result of every queued statement and Sync, and the final Sync. */
static int read_results(Pg *pg, Outcome *o)
{
    for (size_t i = 0; i < pg->ntags; i++) {
        if (pg->tags[i] == TAG_SYNC) {
            if (read_sync(pg, o) < 0)
                return o->rc;
            continue;
        }
        PGresult *res = PQgetResult(pg->conn);
        if (res == NULL)
            return pg_result_error(pg, NULL, "could not read a result", o->err);
        if (PQresultStatus(res) == PGRES_FATAL_ERROR)
            note_failure(pg, o, res, pg->tags[i]);
        PQclear(res);
        PGresult *end = PQgetResult(pg->conn); /* NULL after each statement's results */
        if (end != NULL) {
            PQclear(end);
            return pg_result_error(pg, NULL, "unexpected extra result", o->err);
        }
    }
    (void)read_sync(pg, o);
    return o->rc;
}

/* Leaves pipeline mode, whatever state the batch left behind. */
static int pipeline_leave(Pg *pg, int rc, PjError *err)
{
    (void)PQsetnonblocking(pg->conn, 0);
    if (PQexitPipelineMode(pg->conn) != 1 && rc == 0)
        rc = pg_result_error(pg, NULL, "could not leave pipeline mode", err);
    return rc;
}

int pg_pipeline_flush(Pg *pg, PjError *err)
{
    if (!pg->send_failed && PQpipelineSync(pg->conn) == 1 && flush_all(pg) == 0)
        return 0;
    (void)pg_result_error(pg, NULL, "could not send the batch", err);
    if (err != NULL)
        err->code = PJ_ETRANSIENT;
    return pipeline_leave(pg, -PJ_ETRANSIENT, err);
}

int pg_pipeline_finish(Pg *pg, long *ret_failed_tag, PjError *err)
{
    Outcome o = {.failed_tag = -1, .err = err};
    (void)PQsetnonblocking(pg->conn, 0);
    int rc = pipeline_leave(pg, read_results(pg, &o), err);
    *ret_failed_tag = o.rc < 0 ? o.failed_tag : -1;
    return rc;
}

void pg_pipeline_send_sync(Pg *pg)
{
    assert(PQpipelineStatus(pg->conn) != PQ_PIPELINE_OFF);
    if (pg->send_failed)
        return;
    if (PQpipelineSync(pg->conn) != 1) {
        pg->send_failed = true;
        return;
    }
    xgrow((void **)&pg->tags, &pg->tags_cap, pg->ntags + 1, sizeof *pg->tags);
    pg->tags[pg->ntags++] = TAG_SYNC;
}

void pg_pipeline_send_command(Pg *pg, const char *sql, long tag)
{
    assert(PQpipelineStatus(pg->conn) != PQ_PIPELINE_OFF);
    assert(tag != TAG_SYNC);
    if (pg->send_failed)
        return;
    if (PQsendQueryParams(pg->conn, sql, 0, NULL, NULL, NULL, NULL, 0) != 1) {
        pg->send_failed = true;
        return;
    }
    xgrow((void **)&pg->tags, &pg->tags_cap, pg->ntags + 1, sizeof *pg->tags);
    pg->tags[pg->ntags++] = tag;
}

int pg_pipeline_finish_segments(Pg *pg, PgFailureFn *on_failure, void *arg, PjError *err)
{
    assert(on_failure != NULL);
    Outcome o = {.on_failure = on_failure, .arg = arg, .failed_tag = -1, .err = err};
    (void)PQsetnonblocking(pg->conn, 0);
    int rc = pipeline_leave(pg, read_results(pg, &o), err);
    return rc == -PJ_EPERMANENT ? 0 : rc;
}

int pg_pipeline_run(Pg *pg, long *ret_failed_tag, PjError *err)
{
    *ret_failed_tag = -1;
    int rc = pg_pipeline_flush(pg, err);
    return rc < 0 ? rc : pg_pipeline_finish(pg, ret_failed_tag, err);
}

void pg_pipeline_send_begin(Pg *pg)
{
    pg_pipeline_send_command(pg, "BEGIN", -1);
}

int pg_tx_end_send(Pg *pg, bool commit, PjError *err)
{
    if (PQsendQuery(pg->conn, commit ? "COMMIT" : "ROLLBACK") != 1)
        return pg_result_error(pg, NULL, commit ? "could not commit" : "could not roll back", err);
    return 0;
}

int pg_tx_end_wait(Pg *pg, bool commit, PjError *err)
{
    int rc = 0;
    PGresult *res;
    while ((res = PQgetResult(pg->conn)) != NULL) {
        if (rc == 0 && !result_ok(res))
            rc = pg_result_error(pg, res, commit ? "could not commit" : "could not roll back", err);
        else if (rc == 0 && commit && strcmp(PQcmdStatus(res), "COMMIT") != 0)
            rc = pj_error_set(err, PJ_ETRANSIENT, "could not commit: the transaction had failed");
        PQclear(res);
    }
    if (rc == 0 && pg_broken(pg))
        rc = pg_result_error(pg, NULL, "lost the connection", err);
    return rc;
}

bool pg_conninfo_parses(const char *conninfo)
{
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &errmsg);

    /* errmsg may quote the password: never shown. */
    PQfreemem(errmsg);
    if (opts == NULL)
        return false;
    PQconninfoFree(opts);
    return true;
}
