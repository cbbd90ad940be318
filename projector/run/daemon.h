/* daemon.h - `projector run`: startup order, the signal loop, reload on SIGHUP, orderly
 * shutdown.
 */
#ifndef PROJECTOR_DAEMON_H
#define PROJECTOR_DAEMON_H

#include "base/config.h"
#include "model/model.h"

/* What a reload reads again besides the read models. */
typedef struct DaemonReload {
    const char *config_path; /* projector.yaml: its log_level and log_format; NULL: none */
    bool level_fixed;        /* --log-level was given: it stays */
} DaemonReload;

/* Runs until SIGTERM or SIGINT. Borrows cfg and reload; takes ownership of set (a reload
 * replaces it). Returns the process exit code: 0 after an orderly stop, 1 on a runtime
 * failure, 2 when the read tables do not match their YAML. */
int daemon_run(const Config *cfg, ModelSet *set, const DaemonReload *reload);

#endif
