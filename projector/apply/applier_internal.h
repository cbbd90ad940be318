/* applier_internal.h - what the applier_*.c files share, included by nothing else: the
 * plan's body, where each parameter's value comes from, and the compiler that builds one
 * statement. Order: applier_sql.c < applier_probe.c < applier_plan.c; applier_bind.c needs
 * only the types.
 * Invariant: parameter $n of a statement is the n-th ParamSource recorded while its text
 * was built, so binding never re-parses.
 */
#ifndef PROJECTOR_APPLIER_INTERNAL_H
#define PROJECTOR_APPLIER_INTERNAL_H

#include "apply/applier.h"

/* What a parameter is for: decides whether a null value fails the event. */
typedef enum {
    APPLIER_PARAM_VALUE, /* a column value that may be null (the table's constraints decide) */
    APPLIER_PARAM_KEY,   /* a key column of an upsert */
    APPLIER_PARAM_WHERE, /* a where column of an update or delete */
    APPLIER_PARAM_ADD,   /* the amount of an add: column */
    APPLIER_PARAM_LOOKUP_WHERE /* a where column of a lookup */
} ParamRole;

typedef struct ParamSource {
    const Expr *expr; /* borrowed from the model */
    ParamRole role;
    const Column *col;  /* the column whose type the value is cast to (borrowed) */
    const char *column; /* its name (borrowed, for messages) */
    const char *target; /* APPLIER_PARAM_LOOKUP_WHERE: the column the lookup fills */
} ParamSource;

typedef struct StatementInfo {
    size_t handler;
    size_t action;
    PlanProbe *probes; /* owned, nprobes entries (applier_probe.c) */
    size_t nprobes;
    ParamSource *params; /* owned; nparams entries, $1 first */
    /* Set when the statement touches exactly the row of its key values and reads no row of
     * its own table (see applier_row_key): key_params[i] is the 0-based parameter holding
     * the value of key column i of the model. Owned, model->nkey entries, or NULL. */
    size_t *key_params;
} StatementInfo;

struct ApplierPlan {
    const ModelSet *set;
    const Model *model;
    PlanStatement *statements; /* owned, count entries */
    StatementInfo *infos;      /* owned, parallel to statements */
    size_t count;
    size_t *first; /* per handler: index of its first statement (owned) */
};

/* Builds one statement: its text and the sources of its parameters. */
typedef struct Compiler {
    const ModelSet *set;
    const Model *m;
    bool multi;         /* the set-based form: parameter n is the column v.pn of unnest */
    bool fold;          /* ... whose rows of one key fold into one (see plan_can_fold) */
    bool reads_own;     /* a lookup reads the model's own table */
    size_t *key_params; /* per key column: its parameter (1-based), 0 when not a plain value */
    StrBuf sql;
    ParamSource *params;
    size_t nparams;
    size_t cap;
} Compiler;

/* ---- applier_sql.c ---- */

/* Compiles one form of action a into c, which starts empty but for set, m, multi and fold;
 * c->key_params is allocated here (m->nkey entries). The caller frees c->sql, c->params
 * and c->key_params, or takes them. */
void applier_compile_form(Compiler *c, const Action *a);
/* Appends lookup lk's subquery, its where values new parameters for column target. */
void applier_append_lookup(Compiler *c, const Lookup *lk, const char *target);
/* The type a parameter for col is cast to: the column's own type, but for varchar(n) the
 * type without its length (see applier_sql.c). */
const char *applier_param_type(const Column *col);
/* Appends the value of the text expression ref (SQL, "v.p1" say) as col receives it in an
 * assignment: cast to applier_param_type, then, for varchar(n), the assignment's length
 * check, which refuses a value too long instead of cutting it. */
void applier_append_converted(StrBuf *sb, const Column *col, const char *ref);
/* True when the 1-based parameter n holds a key column's value. */
bool applier_param_is_key(const Compiler *c, size_t n);
/* True when the action sets (rather than adds to) the model's version column: only then
 * is there a new version to compare with the row's. */
bool applier_guards_version(const Model *m, const Action *a);

/* ---- applier_probe.c ---- */

/* The probes of statement info (compiled by c, the single-row form of action a). */
void applier_probes_compile(const ModelSet *set, const Model *m, const Action *a, const Compiler *c,
                            StatementInfo *info);
void applier_probes_free(StatementInfo *info);

#endif
