/* testenv.h - what the Criterion suites need from the servers that tests/run.sh starts.
 *
 * The runner exports PROJECTOR_TEST_REDIS_URL ("redis://127.0.0.1:PORT") and
 * PROJECTOR_TEST_PG (a superuser conninfo, "host=127.0.0.1 port=PORT user=postgres
 * dbname=postgres"). Each test gets its own PostgreSQL database and its own Redis logical
 * database, so suites can run in parallel without seeing each other.
 */
#ifndef PROJECTOR_TESTENV_H
#define PROJECTOR_TESTENV_H

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <sys/types.h>

#include "model/model.h"

/* True when both servers are configured. Integration suites cr_skip_test() otherwise. */
bool testenv_have_servers(void);

/* A fresh PostgreSQL database "pj_<prefix>_<pid>_<n>"; returns its conninfo (caller frees). */
char *testenv_create_db(const char *prefix);
/* Connects (asserting success). Caller PQfinish()es. */
PGconn *testenv_pg(const char *conninfo);
/* Runs one SQL statement, asserting success; returns the result (caller PQclear()s). */
PGresult *testenv_sql(PGconn *conn, const char *sql);
/* The whole result of a query as text: rows separated by '\n', columns by '|', NULL as
 * "\N". Caller frees. Handy for comparing tables. */
char *testenv_query_text(PGconn *conn, const char *sql);

/* A Redis logical database no other test in this run uses (flushed); 1..255. */
int testenv_redis_db(void);
/* "redis://127.0.0.1:PORT/DB" (a user and password percent-encoded); caller frees. */
char *testenv_redis_url(int db);
/* Connects and SELECTs db (asserting success). Caller redisFree()s. */
redisContext *testenv_redis(int db);
/* XADD one entry: fields is a JSON object whose string values are sent as they are and
 * other values as compact JSON. Writes the new entry ID into id_out (at least 48 bytes). */
void testenv_xadd(redisContext *c, const char *stream, json_t *fields, char *id_out);

/* Publishes a feed file: one JSON object a line, either
 *   {"stream": "orders", "envelope": {...}}  -> XADD orders * event <compact envelope>
 *   {"stream": "customers", "fields": {...}} -> XADD customers * <field> <value> ...
 * Blank lines and lines starting with '#' are skipped. Returns the number of entries and,
 * if last_ids is given, stores the last ID per stream as a JSON object (caller decrefs). */
int testenv_publish_file(redisContext *c, const char *path, json_t **last_ids);

/* A temporary folder (mkdtemp under /tmp); caller frees the string. */
char *testenv_tmpdir(void);
/* Writes text to dir/name; returns the full path (caller frees). */
char *testenv_write_file(const char *dir, const char *name, const char *text);
/* Loads read models from paths, or from one YAML text written to a temporary file called
 * name (removed again). Prints the diagnostics and returns NULL when they do not load;
 * free with model_set_free. */
ModelSet *testenv_load_models(const char *const *paths, size_t n);
ModelSet *testenv_load_model_text(const char *name, const char *yaml);
/* Appends text to the file at path (a config key, say). */
void testenv_append_file(const char *path, const char *text);
/* A free TCP port on 127.0.0.1. */
int testenv_free_port(void);

/* Writes dir/projector.yaml for the given servers, HTTP port and read-model folder
 * (absolute), with batch and block_ms; returns the path (caller frees). */
char *testenv_write_config(const char *dir, const char *redis_url, const char *pg_conninfo,
                           int http_port, const char *readmodels_dir, int batch, int block_ms);

/* One daemon under test and what it works on: its own folder, PostgreSQL database, Redis
 * database (with a connection to each), HTTP port and config file. */
typedef struct TestDaemon {
    char *dir, *conninfo, *redis_url, *config, *log;
    int rdb, port;
    redisContext *redis;
    PGconn *pg;
    pid_t pid;     /* 0 when not running */
    char last[48]; /* free for the suite: the last entry it published, say */
} TestDaemon;

/* Creates all of it for the read models of folder readmodels_dir (absolute; NULL: the
 * shipped ones), with batch and block_ms; the database is named after name. */
void testenv_daemon_setup(TestDaemon *d, const char *name, const char *readmodels_dir, int batch,
                          int block_ms);
/* Runs the daemon and waits until /wait answers 200 for entry d->last of stream: every
 * read model on the stream has settled it. */
void testenv_daemon_settle(TestDaemon *d, const char *stream);
/* Fails the test unless the query's text (testenv_query_text) on d's database is want;
 * the message shows both and the daemon's log. */
void testenv_daemon_expect(const TestDaemon *d, const char *sql, const char *want);
/* SIGKILLs the daemon if it still runs, and frees everything. */
void testenv_daemon_done(TestDaemon *d);

/* Starts PROJECTOR_BIN with args (NULL-terminated, without argv[0]); stdout and stderr go
 * to log_path. Returns the pid. */
pid_t testenv_spawn(const char *const *args, const char *log_path);
/* Sends sig and waits for the process; returns its exit status (or 128+signal). */
int testenv_kill(pid_t pid, int sig);
/* Waits up to timeout_ms for the process to exit; returns the exit code, or -1 on timeout. */
int testenv_wait_exit(pid_t pid, int timeout_ms);
/* Runs PROJECTOR_BIN with args to completion, capturing stdout+stderr into *out (caller
 * frees); returns the exit code. */
int testenv_run(const char *const *args, char **out);

/* Sleeps ms milliseconds, the whole of them even when a signal arrives. */
void testenv_sleep_ms(int ms);
/* Connects fd, a TCP socket whose options the caller has set, to 127.0.0.1:port. A signal
 * does not end the attempt: the connection goes on and is waited for, up to timeout_ms.
 * Returns 0, or -1 with errno set. */
int testenv_connect(int fd, int port, int timeout_ms);
/* Sends all of data[0 .. len), again after a signal or a short send; false with errno set
 * when the peer is gone or a send timeout passed. */
bool testenv_send_all(int fd, const void *data, size_t len);

/* HTTP GET http://127.0.0.1:port/path; returns the status code (-1 on connection failure)
 * and the body in *body (caller frees; may be NULL). */
int testenv_http_get(int port, const char *path, char **body);
/* Polls GET /healthz until it answers 200 or timeout_ms passes; returns true on success. */
bool testenv_wait_http(int port, int timeout_ms);
/* Polls GET /lag until every read model is "running" with entries_behind 0 on every
 * stream; returns true on success within timeout_ms. */
bool testenv_wait_caught_up(int port, int timeout_ms);

#endif
