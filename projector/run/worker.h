/* worker.h - one thread per read model: read its streams through its consumer group,
 * apply each batch and its checkpoint in one transaction, acknowledge, report progress.
 *
 * Workers share nothing but the Board, so one slow or failing read model never holds
 * up another (except through a lookup, by design: see PRODUCT.md "Order").
 */
#ifndef PROJECTOR_WORKER_H
#define PROJECTOR_WORKER_H

#include <stdatomic.h>

#include "base/config.h"
#include "base/util.h"
#include "board/board.h"
#include "model/model.h"

typedef struct WorkerOpts {
    const Config *cfg;   /* borrowed; outlives the worker */
    const ModelSet *set; /* borrowed; outlives the worker */
    size_t rm;           /* index of the read model in set */
    Board *board;        /* borrowed */
    atomic_bool *stop;   /* set by main on SIGTERM/SIGINT */
} WorkerOpts;

typedef struct Worker Worker;

/* Starts the thread. The worker connects (and reconnects) by itself. */
int worker_start(const WorkerOpts *opts, Worker **ret, PjError *err) PJ_MUSTCHECK;
/* When the worker's loop last turned (monotonic ms): each batch, each read that waits, each
 * pause between retries. A loop that stops turning is a hung worker. */
int64_t worker_heartbeat_ms(const Worker *w);
/* Waits for the thread to finish its batch in flight and exit, then frees it. */
Worker *worker_join(Worker *w);

#endif
