/* checkpoint.h - the bookkeeping rows a batch writes: the checkpoint (last settled entry
 * per read model and stream) and dead letters. Both are queued into the batch's pipeline,
 * so they commit atomically with the read-table changes they describe.
 */
#ifndef PROJECTOR_CHECKPOINT_H
#define PROJECTOR_CHECKPOINT_H

#include "base/stream_id.h"
#include "base/util.h"
#include "model/model.h"
#include "sink/pg.h"

/* Prepares sql, a bookkeeping statement written with :"schema", as name on this session. */
int checkpoint_prepare_sql(Pg *pg, const char *name, const char *sql, const char *schema,
                           int nparams, PjError *err) PJ_MUSTCHECK;
/* Runs a bookkeeping query (written with :"schema") whose only parameter, $1, is m's name;
 * *ret gets the result, which the caller PQclear()s. */
int checkpoint_query_model(Pg *pg, const char *schema, const char *sql_template, const Model *m,
                           PGresult **ret, PjError *err) PJ_MUSTCHECK;
/* Prepares the checkpoint and dead-letter statements on this session. */
int checkpoint_prepare(Pg *pg, const char *schema, PjError *err) PJ_MUSTCHECK;

/* Reads the checkpoint of every stream of m into ret[0..m->nstreams) (0-0 where none) and,
 * when ret_read is not NULL, its position as Redis counts entries into ret_read (-1 when
 * unknown; 0 where there is no checkpoint yet). */
int checkpoint_load(Pg *pg, const char *schema, const Model *m, StreamId *ret, int64_t *ret_read,
                    PjError *err) PJ_MUSTCHECK;
/* Writes a first checkpoint unless one exists (a group created at "$" starts there);
 * entries_read is its position (-1 when unknown). */
int checkpoint_init(Pg *pg, const char *schema, const char *readmodel, const char *stream,
                    StreamId id, int64_t entries_read, PjError *err) PJ_MUSTCHECK;
/* Dead letters per stream of m into ret[0..m->nstreams). */
int checkpoint_count_dead(Pg *pg, const char *schema, const Model *m, uint64_t *ret,
                          PjError *err) PJ_MUSTCHECK;

/* Queues "move the checkpoint of (readmodel, stream) from expected to id, at position
 * entries_read (-1: unknown), applied_total += applied" into the current pipeline. It locks
 * the row, and fails with SQLSTATE 40001 (transient: the batch rolls back) unless the row
 * is still at expected; it never moves back. Send it before the batch's statements. */
void checkpoint_send(Pg *pg, const char *readmodel, const char *stream, StreamId expected,
                     StreamId id, uint64_t applied, int64_t entries_read, long tag);

typedef struct DeadLetter {
    const char *readmodel;
    const char *stream;
    StreamId id;
    const char *event_type; /* may be NULL */
    const char *raw_json;   /* the raw entry as a JSON object */
    const char *error;
    const char *sqlstate; /* may be NULL or "" */
    int attempts;         /* tries it failed in this transaction (at least 1) */
} DeadLetter;

/* Queues the dead letter (a repeat of the same entry adds its attempts). */
void checkpoint_send_dead_letter(Pg *pg, const DeadLetter *d, long tag);
/* Queues the n dead letters d[0 .. n) as one statement (n may be 0); each entry at most
 * once among them. */
void checkpoint_send_dead_letters(Pg *pg, const DeadLetter *d, size_t n, long tag);

#endif
