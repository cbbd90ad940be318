/* merge.h - set-based application: a batch's bound statements gathered into groups, each
 * run as one statement over many rows (the plan statement's multi_sql, parameters as
 * text[] through unnest), with the effect of running them one by one in batch order.
 */
#ifndef PROJECTOR_MERGE_H
#define PROJECTOR_MERGE_H

#include "applier.h"

/* Statements of one plan statement on distinct rows (or, for a folding statement, several
 * of one row, in batch order), run together. */
typedef struct MergeGroup {
    size_t statement; /* index into the plan */
    size_t first;     /* members[first .. first + count) */
    size_t count;
} MergeGroup;

/* The groups of one batch, in the order they must run. Reused from batch to batch. */
typedef struct MergePlan {
    MergeGroup *groups;
    size_t ngroups, groups_cap;
    size_t *members; /* indices into the statements given to merge_build */
    size_t members_cap;
} MergePlan;

/* Groups stmts[0 .. n) (borrowed, in batch order) into mp (emptied first). */
void merge_build(MergePlan *mp, const ApplierPlan *plan, const BoundStatement *const *stmts,
                 size_t n);
void merge_plan_done(MergePlan *mp);

/* The parameters of group g's set-based statement: parameter k is the text[] literal of
 * the k-th parameter of every member, in member order (NULL stays NULL). Owned by the
 * caller: merge_params_free. */
char **merge_params(const MergePlan *mp, const MergeGroup *g, const BoundStatement *const *stmts,
                    int nparams);
void merge_params_free(char **params, int nparams);

#endif
