/* metrics.h - the Prometheus text exposition (format 0.0.4) of the daemon's progress.
 *
 * Pure: it renders the /lag document that board_json builds, so the numbers on /metrics are
 * always the ones /lag shows.
 */
#ifndef PROJECTOR_METRICS_H
#define PROJECTOR_METRICS_H

#include <jansson.h>

#include "base/util.h"

/* Renders projector_up, projector_readmodel_state, projector_events_applied_total,
 * projector_events_skipped_total, projector_dead_letters_total, projector_lag_entries,
 * projector_lag_seconds, projector_last_poll_age_seconds and projector_wait_pending.
 * lag (borrowed) is board_json(board, -1); missing fields are left out. Caller frees. */
char *metrics_render(const json_t *lag, size_t wait_pending);

#endif
