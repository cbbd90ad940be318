/* ddl.c - the SQL that creates a read model's table and indexes, and the comparison of a
 * model with the table that already exists. Pure: the caller reads the catalog (tables.c)
 * and runs the statements.
 *
 * Identifiers come from a validated model and are always quoted; defaults are quoted
 * literals cast to the column's type, so YAML text never becomes SQL syntax.
 */
#include "apply/ddl.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define DDL_NAME_MAX 63 /* NAMEDATALEN - 1 */

/* "type [NOT NULL] [DEFAULT CAST('literal' AS type)]" */
static void ddl_append_column_type(StrBuf *sb, const Column *col)
{
    strbuf_append(sb, col->sql_type);
    if (!col->nullable)
        strbuf_append(sb, " NOT NULL");
    if (col->default_text != NULL) {
        strbuf_append(sb, " DEFAULT CAST(");
        sql_append_literal(sb, col->default_text);
        strbuf_appendf(sb, " AS %s)", col->sql_type);
    }
}

/* "<table>_<col>_..._idx", or its first bytes and a hash when that passes 63 bytes
 * (PostgreSQL would silently truncate, and two long names could then collide). */
static char *ddl_index_name(const Model *m, const Index *ix)
{
    StrBuf sb = {0};

    strbuf_append(&sb, m->table_name);
    for (size_t i = 0; i < ix->ncolumns; i++) {
        strbuf_append(&sb, "_");
        strbuf_append(&sb, m->columns[ix->columns[i]].name);
    }
    strbuf_append(&sb, "_idx");
    if (sb.len > DDL_NAME_MAX) {
        uint64_t h = fnv1a64(sb.buf, sb.len, 0);
        char tail[24];
        int n = snprintf(tail, sizeof tail, "_%016" PRIx64 "_idx", h);
        sb.len = DDL_NAME_MAX - (size_t)n;
        sb.buf[sb.len] = '\0';
        strbuf_append(&sb, tail);
    }
    return strbuf_take(&sb);
}

static void ddl_append_index(StrBuf *sb, const Model *m, const Index *ix)
{
    char *name = ddl_index_name(m, ix);

    strbuf_append(sb, "CREATE INDEX IF NOT EXISTS ");
    sql_append_ident(sb, name);
    strbuf_append(sb, " ON ");
    model_append_table(sb, m);
    strbuf_append(sb, " (");
    for (size_t i = 0; i < ix->ncolumns; i++) {
        if (i > 0)
            strbuf_append(sb, ", ");
        sql_append_ident(sb, m->columns[ix->columns[i]].name);
    }
    strbuf_append(sb, ");\n");
    free(name);
}

char *ddl_create_sql(const Model *m)
{
    StrBuf sb = {0};

    strbuf_append(&sb, "CREATE TABLE IF NOT EXISTS ");
    model_append_table(&sb, m);
    strbuf_append(&sb, " (\n");
    for (size_t i = 0; i < m->ncolumns; i++) {
        strbuf_append(&sb, "    ");
        sql_append_ident(&sb, m->columns[i].name);
        strbuf_append(&sb, " ");
        ddl_append_column_type(&sb, &m->columns[i]);
        strbuf_append(&sb, ",\n");
    }
    strbuf_append(&sb, "    PRIMARY KEY (");
    for (size_t i = 0; i < m->nkey; i++) {
        if (i > 0)
            strbuf_append(&sb, ", ");
        sql_append_ident(&sb, m->columns[m->key[i]].name);
    }
    strbuf_append(&sb, ")\n);\n");
    for (size_t i = 0; i < m->nindexes; i++)
        ddl_append_index(&sb, m, &m->indexes[i]);
    return strbuf_take(&sb);
}

void live_table_done(LiveTable *t)
{
    for (size_t i = 0; i < t->ncolumns; i++) {
        free(t->columns[i].name);
        free(t->columns[i].sql_type);
    }
    free(t->columns);
    for (size_t i = 0; i < t->nkey; i++)
        free(t->key[i]);
    free(t->key);
    *t = (LiveTable){0};
}

static const LiveColumn *ddl_find_live(const LiveTable *live, const char *name)
{
    for (size_t i = 0; i < live->ncolumns; i++)
        if (strcmp(live->columns[i].name, name) == 0)
            return &live->columns[i];
    return NULL;
}

/* Adds a diagnostic for every difference between a declared column and the live one;
 * returns how many. */
static int ddl_compare_column(const Model *m, const Column *col, const LiveColumn *lc,
                              Diagnostics *diag)
{
    int n = 0;

    if (strcmp(col->sql_type, lc->sql_type) != 0) {
        diag_add(diag, m->file, col->line, col->column,
                 "column \"%s\" of table \"%s\" has type %s in the database, but the read "
                 "model declares %s",
                 col->name, m->table, lc->sql_type, col->sql_type);
        n++;
    }
    if (lc->not_null == col->nullable) {
        diag_add(diag, m->file, col->line, col->column,
                 "column \"%s\" of table \"%s\" is %s in the database, but the read model "
                 "declares it %s",
                 col->name, m->table, lc->not_null ? "NOT NULL" : "nullable",
                 col->nullable ? "nullable" : "NOT NULL");
        n++;
    }
    return n;
}

static void ddl_append_column_list(StrBuf *sb, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        strbuf_append(sb, i > 0 ? ", " : "");
        strbuf_append(sb, names[i]);
    }
}

/* Returns 1 (and adds a diagnostic) when the live primary key differs from key:. */
static int ddl_compare_key(const Model *m, const LiveTable *live, Diagnostics *diag)
{
    bool same = live->nkey == m->nkey;

    for (size_t i = 0; same && i < m->nkey; i++)
        same = strcmp(live->key[i], m->columns[m->key[i]].name) == 0;
    if (same)
        return 0;

    const char **want = xcalloc(m->nkey, sizeof *want);
    StrBuf have = {0}, decl = {0};
    for (size_t i = 0; i < m->nkey; i++)
        want[i] = m->columns[m->key[i]].name;
    ddl_append_column_list(&have, (const char *const *)live->key, live->nkey);
    ddl_append_column_list(&decl, want, m->nkey);
    if (live->nkey == 0)
        diag_add(diag, m->file, 0, 0,
                 "table \"%s\" has no primary key in the database, but the read model declares "
                 "key (%s)",
                 m->table, decl.buf);
    else
        diag_add(diag, m->file, 0, 0,
                 "table \"%s\" has primary key (%s) in the database, but the read model "
                 "declares key (%s)",
                 m->table, have.buf, decl.buf);
    strbuf_done(&have);
    strbuf_done(&decl);
    free(want);
    return 1;
}

static void ddl_append_add_column(StrBuf *alter_sql, const Model *m, const Column *col)
{
    strbuf_append(alter_sql, "ALTER TABLE ");
    model_append_table(alter_sql, m);
    strbuf_append(alter_sql, " ADD COLUMN ");
    sql_append_ident(alter_sql, col->name);
    strbuf_append(alter_sql, " ");
    ddl_append_column_type(alter_sql, col);
    strbuf_append(alter_sql, ";\n");
}

/* A table that does not exist yet has nothing to compare: ddl_create_sql makes it. */
int ddl_reconcile(const Model *m, const LiveTable *live, StrBuf *alter_sql, Diagnostics *diag)
{
    int mismatches = 0;

    if (!live->exists)
        return 0;
    for (size_t i = 0; i < m->ncolumns; i++) {
        const Column *col = &m->columns[i];
        const LiveColumn *lc = ddl_find_live(live, col->name);
        if (lc == NULL)
            ddl_append_add_column(alter_sql, m, col);
        else
            mismatches += ddl_compare_column(m, col, lc, diag);
    }
    mismatches += ddl_compare_key(m, live, diag);
    return mismatches > 0 ? -PJ_EINVAL : 0;
}
