/* loader.h - the loader state shared by load.c (files, top-level keys, cross-file
 * checks), columns.c (columns, key, version, indexes) and actions.c (the `on:` section:
 * handlers, actions, values, lookups), and the helpers of loader.c that all three use.
 * Not a public interface: only the loader's files include it. They call downwards only:
 * load.c -> actions.c -> columns.c -> loader.c -> model.c.
 *
 * Invariant: a Model under construction may be partial (fields left empty after an error),
 * but every error has been added to the load's Diagnostics, so a partial model never
 * leaves the loader.
 */
#ifndef PROJECTOR_LOADER_H
#define PROJECTOR_LOADER_H

#include "base/yamlsrc.h"
#include "model/model.h"

/* A lookup whose source table is only known once every file has been read. */
typedef struct ModelPendingLookup {
    size_t owner;          /* index of the model that holds the lookup */
    Lookup *lookup;        /* borrowed: owned by one of the owner's Assigns */
    const YamlNode *ref;   /* the `lookup: table.column` scalar (in the owner's file) */
    const YamlNode *where; /* the lookup's where mapping */
    bool resolved;         /* lookup->model and lookup->column are valid */
} ModelPendingLookup;

/* Where a model's name and table were declared, for cross-file messages. */
typedef struct ModelMeta {
    YamlSrc *src; /* owned */
    char *text;   /* the file's bytes, owned */
    size_t len;
    int name_line, name_column;
    int table_line, table_column;
} ModelMeta;

/* One load_files call: every model read so far, in file order. */
typedef struct ModelLoad {
    Diagnostics *diag;
    Model *models; /* owned, including partial ones */
    ModelMeta *meta;
    size_t nmodels, cap;
    ModelPendingLookup *pending;
    size_t npending, pending_cap;
    char **strings; /* texts model_text rebuilt, owned */
    size_t nstrings, strings_cap;
} ModelLoad;

/* The reader of one file. */
typedef struct ModelFile {
    ModelLoad *load;
    const YamlSrc *src;
    const char *file;
    const char *text; /* the file's bytes (borrowed from its ModelMeta) */
    size_t len;
    Model *m;     /* the model being built (its index will be `index`) */
    size_t index; /* the model's index in load->models */
} ModelFile;

#define MODEL_IDENT_RULE "must match [a-z_][a-z0-9_]* and be at most 63 bytes"

/* The reader of model i's file (after it was read). */
ModelFile model_file_of(ModelLoad *l, size_t i);

/* Adds "file:line:column: message" at node n (or at an explicit position). */
void model_error(ModelFile *f, const YamlNode *n, const char *fmt, ...) PJ_PRINTF(3, 4);
void model_error_at(ModelFile *f, int line, int column, const char *fmt, ...) PJ_PRINTF(4, 5);

/* Reports keys of map that are not scalars, duplicates, and (when allowed is not NULL)
 * keys that are not in allowed, as "unrecognized key". */
void model_check_keys(ModelFile *f, const YamlNode *map, const char *const *allowed,
                      size_t nallowed);
/* True when map has no key `wanted` and no unrecognized key that looks like a misspelling
 * of it (which model_check_keys reports already, so "missing" would only repeat it). */
bool model_key_missing(ModelFile *f, const YamlNode *map, const char *wanted,
                       const char *const *allowed, size_t nallowed);
/* The text of the i-th key of map when it is a scalar seen for the first time, else NULL
 * (model_check_keys reports those). */
const char *model_map_key(ModelFile *f, const YamlNode *map, size_t i);
/* The text of scalar n as the author meant it: a plain scalar that a flow collection cut
 * at a ',' inside parentheses is read again from the source (see loader.c). Borrowed until
 * the load ends. */
const char *model_text(ModelFile *f, const YamlNode *n);
/* The scalar text of n (as model_text), or NULL after reporting
 * `invalid value for "what": expected <expected>, found <kind>` (a null scalar counts as
 * missing). */
const char *model_scalar(ModelFile *f, const YamlNode *n, const char *what, const char *expected);
/* "null" for a YAML null, else "a scalar", "a mapping" or "a sequence". */
const char *model_found_name(const YamlNode *n);
/* Reports `unknown column "name" in <context>: the columns are a, b, c` for model m. */
void model_error_unknown_column(ModelFile *f, int line, int column, const Model *m,
                                const char *name, const char *context);

/* Why a literal cannot go into a column of this kind ("is not a number", ...), or NULL
 * when it fits. Kinds without a spelling rule accept anything (PostgreSQL casts them). */
const char *model_literal_problem(ColumnKind kind, const char *text);

/* columns.c: the `columns:` mapping, then `key:`, `version:` and `indexes:`, which
 * name columns (so they run after it, in this order). */
void model_parse_columns(ModelFile *f, const YamlNode *n);
void model_parse_key(ModelFile *f, const YamlNode *n);
void model_parse_version(ModelFile *f, const YamlNode *n);
void model_parse_indexes(ModelFile *f, const YamlNode *n);

/* actions.c: parses the `on:` mapping into f->m's handlers. Needs the columns, key
 * and version column parsed first. Lookups are queued in f->load->pending. */
void model_parse_handlers(ModelFile *f, const YamlNode *on);
/* actions.c: resolves every pending lookup against the loaded models and fills each
 * owner's lookup_models. */
void model_resolve_lookups(ModelLoad *load);

#endif
