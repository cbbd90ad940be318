/* config.h - the daemon's configuration (projector.yaml) as a validated Config value.
 *
 * Every key is declared once in a table in config.c (name, type, default, bounds); the
 * loader, the errors and the README read from that table. ${NAME} expands from the
 * environment in every scalar; an unset variable is an error naming it.
 */
#ifndef PROJECTOR_CONFIG_H
#define PROJECTOR_CONFIG_H

#define PARALLEL_APPLY_MAX 16 /* most sessions of one read model (parallel_apply) */
#define CONFIG_TOKEN_MIN 16   /* shortest http.token: a shorter one can be guessed */

#include "base/log.h"
#include "base/util.h"

typedef struct RedisAddr {
    char *host;
    int port;
    int db;
    char *user;     /* NULL when the URL has none */
    char *password; /* NULL when the URL has none; never logged */
} RedisAddr;

typedef struct Config {
    char *path; /* the file it was read from */
    char *redis_url;
    RedisAddr redis; /* parsed from redis_url */
    char *event_field;
    char *consumer;
    int connect_timeout_ms;
    char *pg_conninfo;
    char *pg_schema;
    char *http_listen;
    char *http_token; /* "" when none is required; never logged */
    int http_max_connections;
    int http_max_request_bytes;
    int http_max_waiters;
    int http_reserved_connections; /* kept free of waiters and idle clients */
    int http_header_timeout_ms;    /* for a request head to arrive, whatever it trickles */
    int wait_timeout_ms;
    int wait_timeout_max_ms;
    int backoff_min_ms;   /* retries after a transient fault: capped exponential backoff, */
    int backoff_max_ms;   /* full jitter, between these bounds */
    int retry_attempts;   /* tries of an event PostgreSQL refuses before it is dead-lettered */
    char *readmodels_dir; /* resolved against the config file's folder */
    int batch;
    int block_ms;
    int max_event_bytes; /* a larger entry is dead-lettered, never read whole */
    int max_read_bytes;  /* entry data one read takes (plus one entry), per read model */
    bool set_based;      /* merge a batch's statements on distinct rows (merge.h) */
    int parallel_apply;  /* sessions a large batch is spread over (partition.h) */
    LogLevel log_level;
    LogFormat log_format; /* logfmt (default) or json */
    int stats_interval_s;
    char *literal_secret; /* "file:line:col: \"key\"" of the first secret written as is */
    char *secret_warning; /* set when that file is readable by group or others: log it */
} Config;

/* True when conninfo is a connection string PostgreSQL's client library can parse. The
 * library belongs to the sink layer, so the caller passes its check in. */
typedef bool (*ConfigConninfoCheck)(const char *conninfo);

/* Reads and validates path. Every problem is added to diag as "file:line:col: message";
 * returns -PJ_EINVAL if there was any, -PJ_EIO if the file cannot be read. When the file
 * does not exist and missing_ok is true, the defaults are used. conninfo_parses may be
 * NULL (postgres.conninfo is then not checked). *ret is caller-owned. */
int config_load(const char *path, bool missing_ok, ConfigConninfoCheck conninfo_parses,
                Config **ret, Diagnostics *diag) PJ_MUSTCHECK;
Config *config_free(Config *cfg);

/* Parses redis://[user:password@]host[:port][/db]. Fills *ret (caller frees with
 * redis_addr_done); -PJ_EINVAL with err set otherwise. */
int redis_addr_parse(const char *url, RedisAddr *ret, PjError *err) PJ_MUSTCHECK;
void redis_addr_done(RedisAddr *addr);

#endif
