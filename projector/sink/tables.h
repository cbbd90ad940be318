/* tables.h - the read tables in PostgreSQL: create what is missing, compare what exists.
 *
 * The only libpq side of ddl.h: reads the catalog into a LiveTable and runs the
 * statements ddl.c writes. All changes happen in one transaction, so a mismatch or a
 * failure leaves the database as it was.
 */
#ifndef PROJECTOR_TABLES_H
#define PROJECTOR_TABLES_H

#include <libpq-fe.h>

#include "apply/ddl.h"
#include "base/util.h"
#include "model/model.h"

/* Makes the database match set (borrowed) on the connection (borrowed, idle, outside a
 * transaction): creates every missing read table (and its schema), adds YAML columns
 * missing from existing tables, creates indexes (IF NOT EXISTS). Runs in one transaction
 * under pg_advisory_xact_lock(hashtext('projector tables')), so daemons starting together
 * do not race. Every mismatch between a model and its existing table (type, nullability,
 * primary key) is added to diag naming the file, the table and the column; then nothing
 * is changed and the result is -PJ_EINVAL. A statement that fails (say, adding a NOT NULL
 * column without default to a non-empty table) is added to diag too: -PJ_EINVAL, or
 * -PJ_ETRANSIENT when the connection or server failed (worth retrying). */
int tables_ensure(PGconn *conn, const ModelSet *set, Diagnostics *diag) PJ_MUSTCHECK;

/* Reads m's table through pg_catalog: its columns (format_type, attnotnull) in order and
 * its primary key columns in order. The table is m->table_schema.m->table_name, or when
 * the schema is NULL the first schema of the search_path that has it (to_regclass). A
 * missing table gives ret->exists = false and 0. ret is filled on success only; release
 * it with live_table_done. Returns -PJ_EINVAL when the name belongs to a relation that is
 * not a table (a view, a sequence), -PJ_ETRANSIENT for a connection or server failure,
 * -PJ_EIO for any other query failure, with err set (err->sqlstate too when the server
 * sent one). */
int tables_describe(PGconn *conn, const Model *m, LiveTable *ret, PjError *err) PJ_MUSTCHECK;

/* The DDL of every model of set, in order, for `projector ddl`: the schemas of qualified
 * tables (CREATE SCHEMA IF NOT EXISTS), then each model's ddl_create_sql under a comment
 * naming its read model and file. Caller frees. */
char *tables_ddl_all(const ModelSet *set);

#endif
