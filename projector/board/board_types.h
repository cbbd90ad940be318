/* board_types.h - the words of the progress board: the handle, a read model's state, an
 * entry's outcome and a /wait request. Included through board/board.h, which declares
 * what can be done with them; value types only.
 */
#ifndef PROJECTOR_BOARD_TYPES_H
#define PROJECTOR_BOARD_TYPES_H

#include <stdbool.h>

#include "base/stream_id.h"

typedef struct Board Board;

typedef enum {
    BOARD_STATE_STARTING,    /* not yet connected for the first time */
    BOARD_STATE_RUNNING,     /* caught up */
    BOARD_STATE_CATCHING_UP, /* entries waiting on at least one stream */
    BOARD_STATE_RETRYING,    /* a transient fault (reason says which); will resume by itself */
    BOARD_STATE_STOPPED,     /* cannot progress until an operator acts (reason says why) */
    BOARD_STATE_REBUILDING
} BoardState;

/* "starting", "running", "catching_up", "retrying", "stopped", "rebuilding". */
const char *board_state_name(BoardState state);

typedef enum {
    BOARD_OUTCOME_NONE = 0, /* not settled yet */
    BOARD_OUTCOME_APPLIED,
    BOARD_OUTCOME_DEAD_LETTERED,
    BOARD_OUTCOME_SKIPPED /* the type is not handled by the read model */
} BoardOutcomeKind;

typedef struct BoardOutcome {
    StreamId id;
    BoardOutcomeKind outcome;
    const char *error; /* BOARD_OUTCOME_DEAD_LETTERED: the error text (borrowed for the call) */
} BoardOutcome;

/* Why a worker dropped its sessions to try again (projector_retries_total). */
typedef enum {
    BOARD_RETRY_CONNECTION,    /* a server could not be reached or went away */
    BOARD_RETRY_SERIALIZATION, /* SQLSTATE 40001 */
    BOARD_RETRY_DEADLOCK,      /* 40P01 */
    BOARD_RETRY_TIMEOUT,       /* 57014 (statement timeout), 55P03 (lock not available) */
    BOARD_RETRY_OTHER,
    BOARD_RETRY_COUNT
} BoardRetryCause;

/* "connection", "serialization", "deadlock", "timeout", "other". */
const char *board_retry_cause_name(BoardRetryCause cause);

typedef struct BoardWaiter BoardWaiter;

/* Called once, from whichever thread finishes an armed waiter, without the board mutex. */
typedef void (*BoardWakeFn)(void *arg);

typedef struct BoardWaitRequest {
    const char *stream; /* borrowed for the call */
    StreamId id;
    const char *readmodel; /* NULL: every read model that reads stream */
    unsigned timeout_ms;   /* 0: answer at once */
    const void *owner;     /* groups waiters for board_wait_abort_owner */
    BoardWakeFn wake;
    void *wake_arg;
} BoardWaitRequest;

#endif
