/* migrate.c - apply the embedded bookkeeping migrations and keep the read-model registry.
 *
 * Owns nothing between calls. All of a run's migrations commit together or not at all.
 */
#include "sink/migrations.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "sink/pg.h"

/* Any 64-bit constant shared by every projector; "projmigr" in ASCII. */
#define MIGRATION_LOCK_KEY "7021599419596170610"

char *migrations_render(const char *sql, const char *schema)
{
    static const char token[] = ":\"schema\"";
    StrBuf sb = {0};
    strbuf_append(&sb, "");
    for (const char *p = sql; *p != '\0';) {
        const char *hit = strstr(p, token);
        if (hit == NULL) {
            strbuf_append(&sb, p);
            break;
        }
        strbuf_appendn(&sb, p, (size_t)(hit - p));
        sql_append_ident(&sb, schema);
        p = hit + sizeof token - 1;
    }
    return strbuf_take(&sb);
}

static int exec_rendered(Pg *pg, const char *sql, const char *schema, PjError *err)
{
    char *text = migrations_render(sql, schema);
    int rc = pg_exec(pg, text, err);
    free(text);
    return rc;
}

static int is_applied(Pg *pg, const char *schema, const char *name, bool *ret, PjError *err)
{
    char *sql =
        migrations_render("SELECT 1 FROM :\"schema\".schema_migrations WHERE name = $1", schema);
    PGresult *res;
    const char *params[] = {name};
    int rc = pg_query(pg, sql, 1, params, &res, err);
    free(sql);
    if (rc == 0) {
        *ret = PQntuples(res) > 0;
        PQclear(res);
    }
    return rc;
}

static int apply_one(Pg *pg, const char *schema, const Migration *m, PjError *err)
{
    int rc = exec_rendered(pg, m->sql, schema, err);
    if (rc < 0)
        return pj_error_prefix(err, "migration \"%s\" failed", m->name);
    char *sql =
        migrations_render("INSERT INTO :\"schema\".schema_migrations (name) VALUES ($1)", schema);
    const char *params[] = {m->name};
    rc = pg_query(pg, sql, 1, params, NULL, err);
    free(sql);
    return rc;
}

/* Creates the bookkeeping schema when it is missing. Only then: even CREATE SCHEMA IF NOT
 * EXISTS needs CREATE on the database, which a role that was given its schema (the
 * README's least-privilege recipe) does not have. */
static int ensure_schema(Pg *pg, const char *schema, PjError *err)
{
    const char *params[] = {schema};
    PGresult *res;
    int rc = pg_query(pg, "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1", 1, params,
                      &res, err);
    if (rc < 0)
        return rc;
    bool exists = PQntuples(res) > 0;
    PQclear(res);
    if (exists)
        return 0;
    rc = exec_rendered(pg, "CREATE SCHEMA :\"schema\"", schema, err);
    if (rc < 0 && strcmp(err->sqlstate, PG_SQLSTATE_INSUFFICIENT_PRIVILEGE) == 0)
        return pj_error_suffix(err,
                               "(creating schema \"%s\" needs CREATE on database; or create it "
                               "once for the role: CREATE SCHEMA %s AUTHORIZATION <role>)",
                               schema, schema);
    return rc;
}

static int apply_all(Pg *pg, const char *schema, int *applied, PjError *err)
{
    static const char bootstrap[] =
        "CREATE TABLE IF NOT EXISTS :\"schema\".schema_migrations ("
        " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())";
    int rc = pg_exec(pg, "SELECT pg_advisory_xact_lock(" MIGRATION_LOCK_KEY ")", err);
    if (rc == 0)
        rc = ensure_schema(pg, schema, err);
    if (rc == 0)
        rc = exec_rendered(pg, bootstrap, schema, err);
    for (size_t i = 0; rc == 0 && i < migrations_embedded_count; i++) {
        bool done = false;
        rc = is_applied(pg, schema, migrations_embedded[i].name, &done, err);
        if (rc == 0 && !done) {
            rc = apply_one(pg, schema, &migrations_embedded[i], err);
            if (rc == 0) {
                (*applied)++;
                log_info(NULL, "applied migration \"%s\"", migrations_embedded[i].name);
            }
        }
    }
    return rc;
}

int migrations_apply(Pg *pg, const char *schema, int *ret_applied, PjError *err)
{
    int applied = 0;
    int rc = pg_exec(pg, "BEGIN", err);
    if (rc == 0)
        rc = apply_all(pg, schema, &applied, err);
    if (rc == 0)
        rc = pg_exec(pg, "COMMIT", err);
    if (rc < 0) {
        PjError ignored;
        if (pg_exec(pg, "ROLLBACK", &ignored) < 0)
            log_debug(NULL, "rollback after a failed migration failed too: %s", ignored.message);
        return rc;
    }
    if (ret_applied != NULL)
        *ret_applied = applied;
    return 0;
}

static int register_one(Pg *pg, const char *sql, const Model *m, PjError *err)
{
    const char *params[] = {m->name, m->table, m->file, m->fingerprint};
    PGresult *res;
    int rc = pg_query(pg, sql, 4, params, &res, err);
    if (rc < 0)
        return rc;
    const char *old = PQntuples(res) > 0 && !PQgetisnull(res, 0, 0) ? PQgetvalue(res, 0, 0) : NULL;
    if (old != NULL && strcmp(old, m->fingerprint) != 0)
        log_info(NULL, "definition of read model \"%s\" changed (fingerprint %s, was %s)", m->name,
                 m->fingerprint, old);
    PQclear(res);
    return 0;
}

int migrations_register_models(Pg *pg, const char *schema, const ModelSet *set, PjError *err)
{
    /* The CTE reads the old fingerprint before the upsert replaces it. */
    char *sql = migrations_render(
        "WITH old AS (SELECT fingerprint FROM :\"schema\".readmodels WHERE name = $1), "
        "up AS (INSERT INTO :\"schema\".readmodels (name, table_name, source_file, fingerprint) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET table_name = "
        "EXCLUDED.table_name, "
        "source_file = EXCLUDED.source_file, fingerprint = EXCLUDED.fingerprint, "
        "updated_at = CASE WHEN readmodels.fingerprint = EXCLUDED.fingerprint "
        "THEN readmodels.updated_at ELSE now() END) "
        "SELECT (SELECT fingerprint FROM old)",
        schema);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < set->count; i++)
        rc = register_one(pg, sql, &set->models[i], err);
    free(sql);
    return rc;
}
