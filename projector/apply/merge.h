/* merge.h - set-based application: a batch's bound statements gathered into groups, each
 * run as one statement over many rows (the plan statement's multi_sql, parameters as
 * text[] through unnest), with the effect of running them one by one in batch order.
 */
#ifndef PROJECTOR_MERGE_H
#define PROJECTOR_MERGE_H

#include "apply/applier.h"

/* Statements of one plan statement on distinct rows (or, for a folding statement, several
 * of one row, in batch order), run together. */
typedef struct MergeGroup {
    size_t statement; /* index into the plan */
    size_t first;     /* members[first .. first + count) */
    size_t count;
    bool repeats; /* a folding group with several members on one row */
    unsigned cls; /* the class of its members (merge_build) */
} MergeGroup;

/* The groups of one batch, in the order they must run. Reused from batch to batch. */
typedef struct MergePlan {
    MergeGroup *groups;
    size_t ngroups, groups_cap;
    size_t *members; /* indices into the statements given to merge_build */
    size_t members_cap;
} MergePlan;

/* Groups stmts[0 .. n) (borrowed, in batch order) into mp (emptied first). With classes
 * (NULL: all alike), only statements of one class share a group: a caller that needs a
 * group of statements split (to find which one fails) gives its halves two classes. */
void merge_build(MergePlan *mp, const ApplierPlan *plan, const BoundStatement *const *stmts,
                 const unsigned *classes, size_t n);
void merge_plan_done(MergePlan *mp);

/* Frees what merge_statement returned. */
void merge_params_free(char **params, int nparams);

/* The statement group g runs as (*ret_name) and its parameters: the plain form when its
 * members are on distinct rows or fold in C, else the set-based form. A fold in C that
 * leaves values out also sets *ret_check to the parameters of st->check_name (its
 * check_nparams of them), to run in the same transaction; else *ret_check is NULL.
 * Groups of two or more members; the parameters are the caller's (merge_params_free). */
char **merge_statement(const MergePlan *mp, const MergeGroup *g, const BoundStatement *const *stmts,
                       const PlanStatement *st, const char **ret_name, char ***ret_check);

#endif
