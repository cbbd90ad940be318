/* status.h - `projector status`: the lag of every read model, computed from Redis and the
 * checkpoints in PostgreSQL (so it works whether or not the daemon is running).
 */
#ifndef PROJECTOR_STATUS_H
#define PROJECTOR_STATUS_H

#include <stdio.h>

#include "base/config.h"
#include "base/util.h"
#include "model/model.h"

/* Prints one row per read model and stream. Returns -PJ_ETRANSIENT with err set when a
 * server cannot be reached. */
int status_print(const Config *cfg, const ModelSet *set, FILE *out, PjError *err) PJ_MUSTCHECK;

#endif
