/* dlq.h - `projector dlq`: list, show, retry and discard dead letters.
 *
 * Works on <schema>.dead_letters directly, so it runs whether or not the daemon does. A
 * retry re-applies the raw entry through the current read-model definition in the same
 * transaction that locks and deletes the dead-letter row, so however many retries race,
 * a dead letter takes effect at most once.
 */
#ifndef PROJECTOR_DLQ_H
#define PROJECTOR_DLQ_H

#include <stdio.h>

#include "base/config.h"
#include "base/util.h"
#include "model/model.h"

typedef enum { DLQ_LIST, DLQ_SHOW, DLQ_RETRY, DLQ_DISCARD } DlqAction;

typedef struct DlqArgs {
    DlqAction action;
    int64_t id;            /* show, retry (without --all), discard: the dead letter's id */
    bool all;              /* retry --all */
    const char *readmodel; /* list, retry --all: only this read model's; NULL: all */
} DlqArgs;

/* Parses the words that follow "dlq" (argv is borrowed, and so is ret->readmodel).
 * Returns 0, or -PJ_EINVAL with err set for a usage error: no or an unknown subcommand,
 * a missing, malformed (not a positive integer) or extra ID, an unknown option, an option
 * the subcommand does not take. */
int dlq_parse_args(int argc, const char *const *argv, DlqArgs *ret, PjError *err) PJ_MUSTCHECK;

/* True when the action needs the read models (retry). */
bool dlq_needs_models(const DlqArgs *args);

/* Runs the action against cfg's database (cfg borrowed) and prints the result to out.
 * set (borrowed) holds the current read models; it may be NULL unless
 * dlq_needs_models(args). Returns 0 when everything asked for was done, or with err set:
 * -PJ_ENOTFOUND when the ID names no dead letter (for retry: it was retried or discarded
 * already, or never existed), -PJ_EPERMANENT when a retry failed (each failure is on its
 * own line of out; failures of the event count an attempt in its row), or pg.h's code
 * when PostgreSQL cannot be reached or a bookkeeping query fails (a missing bookkeeping
 * table says to run `projector migrate`). */
int dlq_run(const Config *cfg, const ModelSet *set, const DlqArgs *args, FILE *out,
            PjError *err) PJ_MUSTCHECK;

#endif
