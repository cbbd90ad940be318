/* migrations.h - the bookkeeping schema: the embedded migrations/NNN_name.sql files and applying
 * them.
 *
 * Migrations are numbered files applied once each, in order, in one transaction under an
 * advisory lock, so two daemons starting together cannot apply one twice. In the SQL,
 * :"schema" is replaced by the configured schema name (validated and quoted).
 */
#ifndef PROJECTOR_MIGRATIONS_H
#define PROJECTOR_MIGRATIONS_H

#include <stddef.h>

#include "base/util.h"
#include "model/model.h"

typedef struct Migration {
    const char *name; /* "001_bookkeeping.sql" */
    const char *sql;
} Migration;

/* Generated at build time from migrations/ (see cmake/embed_migrations.cmake). */
extern const Migration migrations_embedded[];
extern const size_t migrations_embedded_count;

typedef struct Pg Pg;

/* Applies every migration not yet recorded in <schema>.schema_migrations. *ret_applied
 * (may be NULL) gets how many were applied now. */
int migrations_apply(Pg *pg, const char *schema, int *ret_applied, PjError *err) PJ_MUSTCHECK;

/* The SQL of one migration with :"schema" replaced. Caller frees. */
char *migrations_render(const char *sql, const char *schema);

/* Records every read model in <schema>.readmodels with its fingerprint; logs the ones
 * whose definition changed since the last run. */
int migrations_register_models(Pg *pg, const char *schema, const ModelSet *set,
                               PjError *err) PJ_MUSTCHECK;

#endif
