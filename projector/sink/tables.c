/* tables.c - reads read tables from pg_catalog and brings them in line with the models.
 *
 * Owns the one transaction that creates tables, schemas, columns and indexes at start.
 * Invariant: every model is compared before anything is changed, so a mismatch anywhere
 * leaves every table untouched. The SQL text itself comes from ddl.c.
 */
#include "sink/tables.h"

#include <stdlib.h>
#include <string.h>

#include "sink/pg.h"

/* ---------------------------------------------------------------------------------------
 * Queries
 * --------------------------------------------------------------------------------------- */

/* True when a later attempt may succeed: the connection or the server went away, or the
 * transaction lost a race (pg.c decides which SQLSTATEs those are). */
static bool tables_is_transient(PGconn *conn, const char *sqlstate)
{
    return PQstatus(conn) != CONNECTION_OK || pg_is_transient_sqlstate(sqlstate);
}

/* Fills err from a failed result (res may be NULL) and returns the negative code. */
static int tables_pg_error(PGconn *conn, const PGresult *res, const char *what, PjError *err)
{
    const char *sqlstate = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char detail[512];

    snprintf(detail, sizeof detail, "%s", primary != NULL ? primary : PQerrorMessage(conn));
    detail[strcspn(detail, "\n")] = '\0';
    int code = tables_is_transient(conn, sqlstate) ? PJ_ETRANSIENT : PJ_EIO;
    int r = pj_error_set(err, code, "could not %s: %s", what, detail);
    if (err != NULL && sqlstate != NULL)
        snprintf(err->sqlstate, sizeof err->sqlstate, "%s", sqlstate);
    return r;
}

/* Runs sql with text parameters; on success *ret holds the result (caller PQclears). */
static int tables_query(PGconn *conn, const char *sql, int nparams, const char *const *params,
                        const char *what, PGresult **ret, PjError *err)
{
    PGresult *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);

    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        *ret = res;
        return 0;
    }
    int r = tables_pg_error(conn, res, what, err);
    PQclear(res);
    return r;
}

/* Runs one or more statements without parameters. */
static int tables_exec(PGconn *conn, const char *sql, const char *what, PjError *err)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int r = 0;

    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
        r = tables_pg_error(conn, res, what, err);
    PQclear(res);
    return r;
}

/* ---------------------------------------------------------------------------------------
 * Describing a table
 * --------------------------------------------------------------------------------------- */

static const char tables_sql_relation[] =
    "SELECT c.oid, c.relkind FROM pg_catalog.pg_class c WHERE c.oid = to_regclass($1)";

static const char tables_sql_columns[] =
    "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull"
    " FROM pg_catalog.pg_attribute a"
    " WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped"
    " ORDER BY a.attnum";

static const char tables_sql_key[] =
    "SELECT a.attname"
    " FROM pg_catalog.pg_index i"
    " CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)"
    " JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
    " WHERE i.indrelid = $1::oid AND i.indisprimary"
    " ORDER BY k.ord";

static void tables_read_columns(const PGresult *res, LiveTable *t)
{
    int n = PQntuples(res);

    t->columns = xcalloc((size_t)n, sizeof *t->columns);
    for (int i = 0; i < n; i++) {
        t->columns[i] = (LiveColumn){
            .name = xstrdup(PQgetvalue(res, i, 0)),
            .sql_type = xstrdup(PQgetvalue(res, i, 1)),
            .not_null = strcmp(PQgetvalue(res, i, 2), "t") == 0,
        };
    }
    t->ncolumns = (size_t)n;
}

static void tables_read_key(const PGresult *res, LiveTable *t)
{
    int n = PQntuples(res);

    t->key = xcalloc((size_t)n, sizeof *t->key);
    for (int i = 0; i < n; i++)
        t->key[i] = xstrdup(PQgetvalue(res, i, 0));
    t->nkey = (size_t)n;
}

/* Finds the table's oid; *ret_oid stays NULL when there is no such table. */
static int tables_find_relation(PGconn *conn, const Model *m, char **ret_oid, PjError *err)
{
    StrBuf name = {0};
    PGresult *res = NULL;

    model_append_table(&name, m);
    const char *params[] = {name.buf};
    int r = tables_query(conn, tables_sql_relation, 1, params, "look up a table", &res, err);
    if (r < 0)
        goto out;
    if (PQntuples(res) == 1) {
        const char *kind = PQgetvalue(res, 0, 1);
        if (strcmp(kind, "r") != 0 && strcmp(kind, "p") != 0)
            r = pj_error_set(err, PJ_EINVAL, "relation \"%s\" of read model \"%s\" is not a table",
                             m->table, m->name);
        else
            *ret_oid = xstrdup(PQgetvalue(res, 0, 0));
    }
out:
    PQclear(res);
    strbuf_done(&name);
    return r;
}

int tables_describe(PGconn *conn, const Model *m, LiveTable *ret, PjError *err)
{
    LiveTable t = {0};
    PGresult *cols = NULL, *key = NULL;
    char *oid = NULL;

    int r = tables_find_relation(conn, m, &oid, err);
    if (r < 0 || oid == NULL)
        goto out;
    const char *params[] = {oid};
    r = tables_query(conn, tables_sql_columns, 1, params, "read the columns of a table", &cols,
                     err);
    if (r < 0)
        goto out;
    r = tables_query(conn, tables_sql_key, 1, params, "read the primary key of a table", &key, err);
    if (r < 0)
        goto out;
    t.exists = true;
    tables_read_columns(cols, &t);
    tables_read_key(key, &t);
out:
    PQclear(cols);
    PQclear(key);
    free(oid);
    if (r == 0)
        *ret = t;
    return r;
}

/* ---------------------------------------------------------------------------------------
 * Creating and altering
 * --------------------------------------------------------------------------------------- */

/* Sets *ret to whether the schema exists. */
static int tables_schema_exists(PGconn *conn, const char *schema, bool *ret, PjError *err)
{
    PGresult *res = NULL;
    const char *params[] = {schema};
    int r = tables_query(conn, "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1", 1,
                         params, "look up a schema", &res, err);
    if (r == 0)
        *ret = PQntuples(res) > 0;
    PQclear(res);
    return r;
}

static void tables_append_create_schema(StrBuf *sb, const char *schema)
{
    strbuf_append(sb, "CREATE SCHEMA IF NOT EXISTS ");
    sql_append_ident(sb, schema);
    strbuf_append(sb, ";\n");
}

/* The statements one model needs. A mismatch adds to diag and returns -PJ_EINVAL. */
static int tables_plan_model(PGconn *conn, const Model *m, StrBuf *sql, Diagnostics *diag)
{
    LiveTable live = {0};
    PjError err = {0};
    bool have_schema = true;

    int r = tables_describe(conn, m, &live, &err);
    if (r == 0 && !live.exists && m->table_schema != NULL)
        r = tables_schema_exists(conn, m->table_schema, &have_schema, &err);
    if (r < 0) {
        diag_add(diag, m->file, 0, 0, "%s", err.message);
        return r;
    }
    if (!have_schema)
        tables_append_create_schema(sql, m->table_schema);
    r = ddl_reconcile(m, &live, sql, diag);
    live_table_done(&live);
    if (r < 0)
        return r;
    /* After any ADD COLUMN, so that new indexes may use new columns. On an existing table
     * CREATE TABLE IF NOT EXISTS does nothing. */
    char *create = ddl_create_sql(m);
    strbuf_append(sql, create);
    free(create);
    return 0;
}

/* Compares every model first, then changes tables only when all of them agree. */
static int tables_ensure_locked(PGconn *conn, const ModelSet *set, Diagnostics *diag)
{
    StrBuf *sql = xcalloc(set->count, sizeof *sql);
    int r = 0;

    for (size_t i = 0; i < set->count; i++) {
        int mr = tables_plan_model(conn, &set->models[i], &sql[i], diag);
        if (mr == -PJ_ETRANSIENT || (mr < 0 && r == 0))
            r = mr;
        if (mr == -PJ_ETRANSIENT)
            break;
    }
    for (size_t i = 0; r == 0 && i < set->count; i++) {
        const Model *m = &set->models[i];
        PjError err = {0};
        char what[256];
        snprintf(what, sizeof what, "create or alter table \"%s\"", m->table);
        r = tables_exec(conn, sql[i].buf, what, &err);
        if (r < 0)
            diag_add(diag, m->file, 0, 0, "%s", err.message);
    }
    for (size_t i = 0; i < set->count; i++)
        strbuf_done(&sql[i]);
    free(sql);
    if (r == -PJ_EIO)
        r = -PJ_EINVAL;
    return r;
}

int tables_ensure(PGconn *conn, const ModelSet *set, Diagnostics *diag)
{
    PjError err = {0};

    int r = tables_exec(conn, "BEGIN", "begin a transaction", &err);
    /* "already exists, skipping" notices would be printed on every start. */
    if (r == 0)
        r = tables_exec(conn, "SET LOCAL client_min_messages = warning", "set a setting", &err);
    if (r == 0)
        r = tables_exec(conn, "SELECT pg_advisory_xact_lock(hashtext('projector tables'))",
                        "lock the read tables", &err);
    if (r < 0) {
        diag_add(diag, NULL, 0, 0, "%s", err.message);
        goto out;
    }
    r = tables_ensure_locked(conn, set, diag);
    if (r == 0) {
        r = tables_exec(conn, "COMMIT", "commit the read tables", &err);
        if (r < 0)
            diag_add(diag, NULL, 0, 0, "%s", err.message);
    }
out:
    if (r < 0 && PQtransactionStatus(conn) != PQTRANS_IDLE)
        (void)tables_exec(conn, "ROLLBACK", "roll back", NULL);
    if (r == -PJ_EIO)
        r = -PJ_EINVAL;
    return r;
}

/* ---------------------------------------------------------------------------------------
 * `projector ddl`
 * --------------------------------------------------------------------------------------- */

static bool tables_schema_seen(const ModelSet *set, size_t upto, const char *schema)
{
    for (size_t i = 0; i < upto; i++) {
        const char *s = set->models[i].table_schema;
        if (s != NULL && strcmp(s, schema) == 0)
            return true;
    }
    return false;
}

char *tables_ddl_all(const ModelSet *set)
{
    StrBuf sb = {0};

    for (size_t i = 0; i < set->count; i++) {
        const char *schema = set->models[i].table_schema;
        if (schema != NULL && !tables_schema_seen(set, i, schema))
            tables_append_create_schema(&sb, schema);
    }
    for (size_t i = 0; i < set->count; i++) {
        const Model *m = &set->models[i];
        char *create = ddl_create_sql(m);
        strbuf_appendf(&sb, "%s-- read model \"%s\" (%s)\n", sb.len > 0 ? "\n" : "", m->name,
                       m->file);
        strbuf_append(&sb, create);
        free(create);
    }
    return strbuf_take(&sb);
}
