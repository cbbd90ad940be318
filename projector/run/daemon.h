/* daemon.h - `projector run`: startup order, the signal loop, reload on SIGHUP, orderly
 * shutdown.
 */
#ifndef PROJECTOR_DAEMON_H
#define PROJECTOR_DAEMON_H

#include "base/config.h"
#include "model/model.h"

/* Runs until SIGTERM or SIGINT. Borrows cfg; takes ownership of set (a reload replaces
 * it). Returns the process exit code: 0 after an orderly stop, 1 on a runtime failure,
 * 2 when the read tables do not match their YAML. */
int daemon_run(const Config *cfg, ModelSet *set);

#endif
