/* model.h - read-model declarations (readmodels/NAME.yaml) loaded into a validated ModelSet.
 *
 * Loading is pure (no servers): it parses every file, checks everything that can be
 * checked (keys, types, columns, key and version columns, expressions, functions, paths,
 * lookups, duplicate names and tables) and reports every error of every file as
 * "file:line:column: message" before giving up. A ModelSet that loaded is consistent:
 * every index below points at something that exists.
 */
#ifndef PROJECTOR_MODEL_H
#define PROJECTOR_MODEL_H

#include "base/util.h"
#include "model/expr.h"

typedef enum {
    MODEL_COL_TEXT,
    MODEL_COL_SMALLINT,
    MODEL_COL_INTEGER,
    MODEL_COL_BIGINT,
    MODEL_COL_NUMERIC,
    MODEL_COL_REAL,
    MODEL_COL_DOUBLE,
    MODEL_COL_BOOLEAN,
    MODEL_COL_TIMESTAMPTZ,
    MODEL_COL_TIMESTAMP,
    MODEL_COL_DATE,
    MODEL_COL_UUID,
    MODEL_COL_JSONB,
    MODEL_COL_VARCHAR
} ColumnKind;

/* True for smallint, integer, bigint, numeric, real, double precision. */
bool column_kind_is_numeric(ColumnKind kind);

typedef struct Column {
    char *name;
    /* PostgreSQL's own spelling (format_type): "text", "integer", "bigint",
     * "numeric(12,2)", "timestamp with time zone", "character varying(20)", ... */
    char *sql_type;
    ColumnKind kind;
    bool nullable;      /* false unless `nullable: true`; key columns are never nullable */
    char *default_text; /* the `default:` literal as written, or NULL */
    bool in_key;
    int line, column;
} Column;

typedef struct Assign Assign;

/* {lookup: table.column, where: {...}}: one value read from another read model's table. */
typedef struct Lookup {
    size_t model;  /* index of the source read model in the ModelSet */
    size_t column; /* column index in the source model */
    Assign *where; /* where[i].column indexes the source model's columns; never a lookup */
    size_t nwhere;
} Lookup;

/* One column assignment. Exactly one of expr and lookup is set. */
struct Assign {
    size_t column; /* index into the owning model's columns (the lookup source's for where) */
    Expr *expr;
    Lookup *lookup;
    int line, column_no;
};

typedef enum { MODEL_ACTION_UPSERT, MODEL_ACTION_UPDATE, MODEL_ACTION_DELETE } ActionKind;

typedef struct Action {
    ActionKind kind;
    Cond *when;  /* NULL: always */
    Assign *set; /* upsert: the row's columns (every key column is present); update: set: */
    size_t nset;
    Assign *add; /* add: (upsert and update); numeric columns only */
    size_t nadd;
    Assign *where; /* update and delete: column = value, ANDed; never a lookup */
    size_t nwhere;
    bool sets_version; /* set or add includes the model's version column */
    int line, column;
} Action;

/* The actions one event type maps to, applied in order. */
typedef struct Handler {
    char *event_type;
    Action *actions;
    size_t nactions;
    int line, column;
} Handler;

typedef enum { MODEL_START_BEGINNING, MODEL_START_END } StartPos;

/* What a worker does with an event that cannot be applied. */
typedef enum {
    MODEL_ON_ERROR_DEAD_LETTER, /* dead-letter it and go on (the default) */
    MODEL_ON_ERROR_STOP         /* stop the read model at it until an operator acts */
} OnError;

typedef struct Index {
    size_t *columns;
    size_t ncolumns;
} Index;

typedef struct Model {
    char *name;
    char *file;         /* the YAML file it came from */
    char *table;        /* as written: "orders" or "app.orders" */
    char *table_schema; /* NULL when unqualified (the search_path decides) */
    char *table_name;
    char **streams;
    size_t nstreams;
    StartPos start;
    OnError on_error;
    size_t *key; /* column indices, in declaration order of `key:` */
    size_t nkey;
    int version_column; /* column index, or -1 */
    Column *columns;
    size_t ncolumns;
    Index *indexes;
    size_t nindexes;
    Handler *handlers;
    size_t nhandlers;
    /* Distinct indices of the other models whose tables this one looks up (the worker
     * waits for them on every stream they share, see PRODUCT.md "Order"). */
    size_t *lookup_models;
    size_t nlookup_models;
    char fingerprint[17]; /* hex FNV-1a 64 of the file's bytes */
} Model;

typedef struct ModelSet {
    Model *models;
    size_t count;
} ModelSet;

/* Loads every *.yaml and *.yml file of dir, in name order. Every problem found is added
 * to diag; returns -PJ_EINVAL if there was any (and *ret is untouched), -PJ_EIO if the
 * folder cannot be read. An empty folder is an error. *ret is owned by the caller. */
int model_load_dir(const char *dir, ModelSet **ret, Diagnostics *diag) PJ_MUSTCHECK;
/* Same for an explicit list of files (cross-file checks included). */
int model_load_files(const char *const *paths, size_t npaths, ModelSet **ret,
                     Diagnostics *diag) PJ_MUSTCHECK;
/* Accepts NULL; returns NULL. */
ModelSet *model_set_free(ModelSet *set);
/* Frees what m owns (not m itself): the loader builds models in place, and frees a
 * partial one this way when a load fails. */
void model_done(Model *m);

/* The handler for an event type, or NULL when the model does not handle it. */
const Handler *model_find_handler(const Model *m, const char *event_type);
/* Column index by name, or -1. */
int model_find_column(const Model *m, const char *name);
/* Index of the stream in m->streams, or -1. */
int model_find_stream(const Model *m, const char *stream);
/* Index of the model by name, or -1. */
int model_set_find(const ModelSet *set, const char *name);

/* Appends the model's table as a quoted, possibly schema-qualified identifier. */
void model_append_table(StrBuf *sb, const Model *m);

#endif
