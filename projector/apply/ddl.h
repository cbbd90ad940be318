/* ddl.h - read tables: the CREATE statements for a model, and the comparison of a model
 * with the table that already exists. Pure: the live table is described by the caller.
 */
#ifndef PROJECTOR_DDL_H
#define PROJECTOR_DDL_H

#include "base/util.h"
#include "model/model.h"

/* "CREATE TABLE IF NOT EXISTS ...;\nCREATE INDEX IF NOT EXISTS ...;\n" for one model:
 * columns with their types, NOT NULL unless nullable, DEFAULT from `default:` (as a quoted
 * literal cast to the type), PRIMARY KEY (key), one index per `indexes:` entry named
 * "<table>_<col>_<col>_idx" (shortened with a hash past 63 bytes). Caller frees. */
char *ddl_create_sql(const Model *m);

typedef struct LiveColumn {
    char *name;
    char *sql_type; /* format_type(atttypid, atttypmod) */
    bool not_null;
} LiveColumn;

typedef struct LiveTable {
    bool exists;
    LiveColumn *columns;
    size_t ncolumns;
    char **key; /* primary key columns in order; nkey == 0 when there is none */
    size_t nkey;
} LiveTable;

void live_table_done(LiveTable *t);

/* Compares m with the existing table. A column declared in the YAML but missing from
 * the table is added: "ALTER TABLE ... ADD COLUMN ...;" is appended to alter_sql (for a
 * NOT NULL column without default PostgreSQL refuses that on a non-empty table, and the
 * caller reports its error).
 * Every other difference (type, nullability, primary key) is added to diag, naming the
 * file, the table and the column, and the result is -PJ_EINVAL. Columns present in the
 * table but not in the YAML are left alone. */
int ddl_reconcile(const Model *m, const LiveTable *live, StrBuf *alter_sql,
                  Diagnostics *diag) PJ_MUSTCHECK;

#endif
