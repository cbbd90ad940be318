/* applier.h - read model + normalized event -> SQL statements and their parameters. Pure.
 *
 * A plan holds one prepared statement per action of a model, compiled once at start. The
 * SQL text comes only from validated, quoted identifiers and fixed keywords; every event
 * value travels as a text parameter cast to its column's type by PostgreSQL, so values can
 * never change a statement's meaning.
 *
 * A value reaches its column as an INSERT or UPDATE assigns it, so one that does not fit is
 * refused (the event is dead-lettered), never cut: a varchar(n) parameter is cast to
 * varchar, and the assignment applies the length (see applier_param_type).
 *
 * Statement shapes (t is the read table, $n parameters):
 *   upsert: INSERT INTO t AS t (cols) VALUES (CAST($1 AS type), ...)
 *           ON CONFLICT (key) DO UPDATE SET col = EXCLUDED.col, ...,
 *             addcol = COALESCE(t.addcol, default) + CAST($k AS type)
 *           [WHERE t.version IS NULL OR t.version < EXCLUDED.version]
 *           (an add: column inserts as CAST(default AS type) + CAST($k AS type), default 0
 *           when the column has none; DO NOTHING when every column is a key column)
 *   update: UPDATE t AS t SET col = CAST($1 AS type), addcol = COALESCE(t.addcol, d) + ...
 *           WHERE t.w1 = CAST($i AS type) AND ... [AND (t.version IS NULL OR t.version < $v)]
 *   delete: DELETE FROM t AS t WHERE t.w1 = CAST($i AS type) AND ...
 *   lookup: (SELECT s.col FROM source AS s WHERE s.w = CAST($j AS type) LIMIT 1)
 */
#ifndef PROJECTOR_APPLIER_H
#define PROJECTOR_APPLIER_H

#include <jansson.h>
#include <stdint.h>

#include "base/util.h"
#include "model/model.h"

/* How the rows of one key fold, per parameter of a folding statement (see merge_fold). */
typedef enum {
    APPLIER_FOLD_KEY,     /* a key column: the same in every row of the key */
    APPLIER_FOLD_LAST,    /* the last row's value */
    APPLIER_FOLD_INT,     /* an add: amount into an integer column: summed, each in lo..hi */
    APPLIER_FOLD_DECIMAL, /* into numeric(precision, scale): each rounded to scale first, then
                             summed */
    APPLIER_FOLD_SQL      /* only PostgreSQL sums it exactly (numeric without a typmod) */
} FoldKind;

typedef struct FoldParam {
    FoldKind kind;
    int64_t lo, hi;       /* APPLIER_FOLD_INT: the column type's range */
    int precision, scale; /* APPLIER_FOLD_DECIMAL */
    bool not_null;        /* APPLIER_FOLD_LAST: its column refuses a null */
} FoldParam;

typedef struct PlanStatement {
    char *name; /* "a<handler>_<action>", unique within the plan */
    char *sql;
    int nparams;
    /* The set-based form, for a statement that touches one row by its whole key: the same
     * statement over many rows, parameter n a text[] of the n-th values of every row
     * (FROM/USING unnest(...) AS v(p1, ...)). NULL when the statement cannot be merged. */
    char *multi_name; /* "m<handler>_<action>" */
    char *multi_sql;
    /* The set-based form takes several rows of one key (in batch order) and folds them:
     * add: amounts summed, other values from the last row; it refuses whenever one of
     * those rows alone would (a value its column refuses, a running sum out of range). */
    bool multi_folds;
    /* A folding statement's set-based form without the folding (no GROUP BY), for rows of
     * distinct keys: "p<handler>_<action>", and how each parameter folds, for a caller that
     * folds the rows itself. NULL for a statement that does not fold. */
    char *plain_name;
    char *plain_sql;
    FoldParam *fold; /* nparams entries */
    /* For a caller that folds in C and so sends only each key's last values: a statement
     * that has PostgreSQL convert the values left out, each as its column would receive it
     * (it refuses where one of those events alone would). Parameter j is a text[] of the
     * values of the j-th APPLIER_FOLD_LAST parameter. "c<handler>_<action>"; NULL when the
     * statement does not fold or has no such parameter. */
    char *check_name;
    char *check_sql;
    int check_nparams;
} PlanStatement;

typedef struct ApplierPlan ApplierPlan;

/* Compiles every action of set->models[model]. Borrows set, which must outlive the plan.
 * Returns -PJ_EINVAL only on a broken invariant of a loaded model. */
int applier_plan_new(const ModelSet *set, size_t model, ApplierPlan **ret,
                     PjError *err) PJ_MUSTCHECK;
ApplierPlan *applier_plan_free(ApplierPlan *plan);
size_t applier_plan_count(const ApplierPlan *plan);
const PlanStatement *applier_plan_statement(const ApplierPlan *plan, size_t i);

/* A lookup whose finding nothing PostgreSQL refuses: an upsert's insert puts its value into
 * a NOT NULL column (the insert's constraints are checked before any conflict), from
 * another read model's table. A probe asks, for many events of the statement at once,
 * which of them find nothing: parameter $1 is a bigint[] of event numbers, then one text[]
 * per where value (the statement's parameters where_params[i]); it returns the numbers of
 * the events whose lookup finds nothing, as PostgreSQL would find it for each. */
typedef struct PlanProbe {
    char *name; /* "q<handler>_<action>_<k>" */
    char *sql;
    int nparams;
    size_t *where_params; /* nparams - 1 entries, 0-based parameters of the statement */
    char *refusal;        /* PostgreSQL's refusal of such an event, for its dead letter */
} PlanProbe;

/* The probes of statement i of the plan (none for most). */
size_t applier_plan_nprobes(const ApplierPlan *plan, size_t i);
const PlanProbe *applier_plan_probe(const ApplierPlan *plan, size_t i, size_t k);

/* One statement to execute: index into the plan and its parameters. */
typedef struct BoundStatement {
    size_t statement;
    int nparams;
    char **params; /* owned; a NULL entry is SQL NULL */
} BoundStatement;

typedef struct Bound {
    BoundStatement *items;
    size_t count;
    size_t cap;
} Bound;

#define APPLIER_UNHANDLED 1

/* Evaluates the actions that the event's type ($.type) maps to and appends to *ret one
 * bound statement per action whose `when:` holds, in order. The event (borrowed) is the
 * normalized JSON object of event.h.
 * Returns 0 (zero or more statements appended), APPLIER_UNHANDLED when the model has no
 * handler for the type (nothing appended), or -PJ_EPERMANENT with err set when the event
 * cannot be applied: a null key or where value, a null add: amount, a failing expression
 * (nothing appended in that case either). */
int applier_bind(const ApplierPlan *plan, const json_t *event, Bound *ret,
                 PjError *err) PJ_MUSTCHECK;
/* When b touches exactly one row, named by its key values, and reads no row of the read
 * table (so it commutes with every statement on another row), writes that row's identity
 * to ret_key (reset first) and returns true. False for a fan-out update, a lookup into the
 * model's own table, or a key value not written in its type's canonical form (two
 * spellings of one value would look like two rows). A statement may have a row key and
 * still no set-based form (multi_sql NULL). */
bool applier_row_key(const ApplierPlan *plan, const BoundStatement *b, StrBuf *ret_key);

/* What PostgreSQL said when it refused a statement: its diagnostic fields, any may be NULL
 * (borrowed). */
typedef struct ApplierRefusal {
    const char *sqlstate, *primary, *detail, *context;
} ApplierRefusal;

/* For a refusal of b that is a data exception (SQLSTATE class 22: a value that does not
 * convert or does not fit), which PostgreSQL reports by type alone, appends the column it
 * is about to ret (`column "code"`; `column "a" or "b"` when the type and the values leave
 * more than one) and returns true. False, with nothing appended, for any other refusal or
 * when no column of b's action has the type the refusal names. */
bool applier_refused_column(const ApplierPlan *plan, const BoundStatement *b,
                            const ApplierRefusal *r, StrBuf *ret);

/* Frees the parameters of every item and empties b (keeps its memory). */
void bound_reset(Bound *b);
void bound_done(Bound *b);

#endif
