/* status.h - `projector status`: the lag of every read model, computed from Redis and the
 * checkpoints in PostgreSQL (so it works whether or not the daemon is running), with the
 * state the running daemon reports.
 */
#ifndef PROJECTOR_STATUS_H
#define PROJECTOR_STATUS_H

#include <stdio.h>

#include "base/config.h"
#include "base/util.h"
#include "model/model.h"

/* Prints one row per read model and stream (an aligned table, or with json one JSON
 * document), with the state and reason the running daemon's /lag gives, and a line for
 * each server that cannot be reached. Returns -PJ_ETRANSIENT with err set when PostgreSQL
 * or Redis cannot be reached (what could be learnt is printed all the same). */
int status_print(const Config *cfg, const ModelSet *set, bool json, FILE *out,
                 PjError *err) PJ_MUSTCHECK;

#endif
