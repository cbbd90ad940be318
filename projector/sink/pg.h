/* pg.h - a libpq session: connect, run statements, classify failures by SQLSTATE, and
 * send a batch of prepared statements as one pipeline (one round trip, one transaction).
 *
 * Transient (retry, never dead-letter): connection failures and SQLSTATE classes 08, 53,
 * 57P0x, 40001, 40P01, 55P03, 58. Everything else that a statement of an event raises is
 * the event's fault (permanent).
 */
#ifndef PROJECTOR_PG_H
#define PROJECTOR_PG_H

#include <libpq-fe.h>

#include "base/util.h"

typedef struct Pg Pg;

/* Connects; -PJ_ETRANSIENT with err set (the password never appears in it). */
int pg_connect(const char *conninfo, Pg **ret, PjError *err) PJ_MUSTCHECK;
Pg *pg_free(Pg *pg);
PGconn *pg_conn(Pg *pg);
/* SQLSTATEs the daemon acts on by name. */
#define PG_SQLSTATE_INSUFFICIENT_PRIVILEGE "42501"

bool pg_is_transient_sqlstate(const char *sqlstate);
/* True when libpq can parse conninfo (a config check; connects to nothing). */
bool pg_conninfo_parses(const char *conninfo);
/* True when the connection is gone (after a failure). */
bool pg_broken(Pg *pg);

/* Fills err from a failed result (message, SQLSTATE) and returns -PJ_ETRANSIENT or
 * -PJ_EPERMANENT. res may be NULL (connection failure). */
int pg_result_error(Pg *pg, const PGresult *res, const char *what, PjError *err);

/* Says where in an error that pg_result_error(..., what, err) wrote: "what: place: ..."
 * ("could not apply: column \"code\": value too long ..."). Keeps its code and SQLSTATE;
 * leaves an error that does not start with "what: " as it is. */
void pg_error_place(PjError *err, const char *what, const char *place);

/* Runs one statement without parameters; fails unless it returns COMMAND_OK/TUPLES_OK. */
int pg_exec(Pg *pg, const char *sql, PjError *err) PJ_MUSTCHECK;
/* Runs a parameterised statement; on success *ret (may be NULL) gets the result, which
 * the caller PQclear()s. */
int pg_query(Pg *pg, const char *sql, int nparams, const char *const *params, PGresult **ret,
             PjError *err) PJ_MUSTCHECK;
/* Runs the statement prepared as name (pg_prepare); on success *ret gets the result,
 * which the caller PQclear()s. */
int pg_query_prepared(Pg *pg, const char *name, int nparams, const char *const *params,
                      PGresult **ret, PjError *err) PJ_MUSTCHECK;
/* Prepares name unless already prepared on this session. */
int pg_prepare(Pg *pg, const char *name, const char *sql, int nparams, PjError *err) PJ_MUSTCHECK;

/* ---- pipelines: one implicit transaction committed by the Sync at the end ---- */

/* Enters pipeline mode. Then queue statements with pg_pipeline_send, and finish with
 * pg_pipeline_run, which flushes, reads every result and leaves pipeline mode. */
int pg_pipeline_begin(Pg *pg, PjError *err) PJ_MUSTCHECK;
/* Queues a prepared statement; tag is an opaque caller value reported on failure. */
void pg_pipeline_send(Pg *pg, const char *name, int nparams, const char *const *params, long tag);
/* Sends Sync and reads all results. Returns 0 when everything committed; otherwise
 * -PJ_ETRANSIENT/-PJ_EPERMANENT with err set and *ret_failed_tag = the tag of the
 * statement that failed (-1 when none did: a connection or send failure). Nothing of the
 * pipeline is committed on failure. */
int pg_pipeline_run(Pg *pg, long *ret_failed_tag, PjError *err) PJ_MUSTCHECK;
/* pg_pipeline_run in two halves, so the caller can work while the server runs the batch:
 * pg_pipeline_flush sends everything queued and the Sync (on failure it leaves pipeline
 * mode itself and returns -PJ_ETRANSIENT); pg_pipeline_finish then reads the results, as
 * pg_pipeline_run does, and leaves pipeline mode. */
int pg_pipeline_flush(Pg *pg, PjError *err) PJ_MUSTCHECK;
int pg_pipeline_finish(Pg *pg, long *ret_failed_tag, PjError *err) PJ_MUSTCHECK;

/* ---- pipelines of segments: one Sync per segment ----
 *
 * A statement that fails skips only the rest of its segment. Inside an explicit
 * transaction (pg_pipeline_send_begin) the transaction stays open and aborted after such a
 * failure, until a ROLLBACK TO SAVEPOINT at the start of a later segment repairs it: so one
 * round trip can learn which of many segments PostgreSQL refuses. */

/* Queues a statement without parameters (SAVEPOINT, RELEASE, COMMIT ...), tagged. */
void pg_pipeline_send_command(Pg *pg, const char *sql, long tag);
/* Ends the current segment. */
void pg_pipeline_send_sync(Pg *pg);
/* Hears the first statement of a segment that PostgreSQL refused (a permanent failure):
 * its tag, the error and the result (its diagnostic fields; borrowed for the call). */
typedef void PgFailureFn(void *arg, long tag, const PjError *err, const PGresult *res);
/* After pg_pipeline_flush: reads every result and leaves pipeline mode, telling
 * on_failure (with arg) of each segment's refused statement. Returns 0 when every failure
 * was a refusal; otherwise (a transient failure, the connection) -PJ_ETRANSIENT, err set. */
int pg_pipeline_finish_segments(Pg *pg, PgFailureFn *on_failure, void *arg,
                                PjError *err) PJ_MUSTCHECK;

/* ---- explicit transactions, for work committed across several sessions ---- */

/* Queues BEGIN as the pipeline's first statement: then a successful pg_pipeline_finish
 * leaves the transaction open (and a failed one leaves it aborted) until pg_tx_end. */
void pg_pipeline_send_begin(Pg *pg);
/* Sends COMMIT or ROLLBACK without waiting; pg_tx_end_wait reads the answer, so several
 * sessions can end their transactions at once. A COMMIT that the server turns into a
 * rollback (the transaction had failed) is an error. */
int pg_tx_end_send(Pg *pg, bool commit, PjError *err) PJ_MUSTCHECK;
int pg_tx_end_wait(Pg *pg, bool commit, PjError *err) PJ_MUSTCHECK;

#endif
