/* test_config.c - projector.yaml: defaults, every key, ${ENV}, bounds, unknown keys,
 * Redis URLs, positions in errors. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/config.h"
#include "sink/pg.h"

static char *write_tmp(const char *text)
{
    char *path = strdup("/tmp/pj_config_XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

/* Loads text; returns the diagnostics joined by '\n' (caller frees) and the config. */
static char *load(const char *text, Config **cfg)
{
    char *path = write_tmp(text);
    Diagnostics d = {0};
    *cfg = NULL;
    int rc = config_load(path, false, pg_conninfo_parses, cfg, &d);
    StrBuf sb = {0};
    strbuf_append(&sb, "");
    for (size_t i = 0; i < d.count; i++)
        strbuf_appendf(&sb, "%d:%d: %s\n", d.items[i].line, d.items[i].column, d.items[i].message);
    cr_assert_eq(rc<0, d.count> 0, "rc %d but %zu diagnostics", rc, d.count);
    diag_done(&d);
    unlink(path);
    free(path);
    return strbuf_take(&sb);
}

Test(config, empty_file_gives_defaults)
{
    Config *cfg;
    char *errs = load("", &cfg);
    cr_assert_str_empty(errs);
    cr_assert_str_eq(cfg->redis.host, "127.0.0.1");
    cr_assert_eq(cfg->redis.port, 6379);
    cr_assert_str_eq(cfg->event_field, "event");
    cr_assert_str_eq(cfg->pg_schema, "projector");
    cr_assert_str_eq(cfg->http_listen, "127.0.0.1:8080");
    cr_assert_eq(cfg->batch, 1000);
    cr_assert_eq(cfg->block_ms, 1000);
    cr_assert_eq(cfg->max_event_bytes, 4 * 1024 * 1024);
    cr_assert_eq(cfg->max_read_bytes, 32 * 1024 * 1024);
    cr_assert(cfg->set_based);
    cr_assert_eq(cfg->backoff_min_ms, 100);
    cr_assert_eq(cfg->backoff_max_ms, 10000);
    cr_assert_eq(cfg->retry_attempts, 1);
    cr_assert_eq(cfg->log_level, LOG_INFO);
    cr_assert_str_eq(cfg->readmodels_dir, "/tmp/readmodels/");
    free(errs);
    config_free(cfg);
}

Test(config, reads_every_section_and_expands_env)
{
    setenv("PJ_TEST_PASSWORD", "s3cret", 1);
    Config *cfg;
    char *errs = load("redis:\n  url: redis://app:${PJ_TEST_PASSWORD}@10.0.0.5:6380/3\n"
                      "  event_field: body\n"
                      "postgres:\n  conninfo: \"host=db password=${PJ_TEST_PASSWORD}\"\n"
                      "  schema: bookkeeping\n"
                      "http:\n  listen: 0.0.0.0:9000\n"
                      "readmodels: /etc/projector/models\nbatch: 250\nblock_ms: 50\n"
                      "log_level: debug\nset_based: false\n"
                      "retry:\n  backoff_min_ms: 50\n  backoff_max_ms: 800\n  attempts: 4\n",
                      &cfg);
    cr_assert_str_empty(errs);
    cr_assert_str_eq(cfg->redis.host, "10.0.0.5");
    cr_assert_eq(cfg->redis.port, 6380);
    cr_assert_eq(cfg->redis.db, 3);
    cr_assert_str_eq(cfg->redis.user, "app");
    cr_assert_str_eq(cfg->redis.password, "s3cret");
    cr_assert_str_eq(cfg->event_field, "body");
    cr_assert_str_eq(cfg->pg_conninfo, "host=db password=s3cret");
    cr_assert_str_eq(cfg->pg_schema, "bookkeeping");
    cr_assert_str_eq(cfg->readmodels_dir, "/etc/projector/models");
    cr_assert_eq(cfg->batch, 250);
    cr_assert_eq(cfg->block_ms, 50);
    cr_assert_not(cfg->set_based);
    cr_assert_eq(cfg->backoff_min_ms, 50);
    cr_assert_eq(cfg->backoff_max_ms, 800);
    cr_assert_eq(cfg->retry_attempts, 4);
    cr_assert_eq(cfg->log_level, LOG_DEBUG);
    free(errs);
    config_free(cfg);
}

Test(config, backoff_bounds_must_be_in_order)
{
    Config *cfg;
    char *errs =
        load("retry:\n  backoff_min_ms: 500\n  backoff_max_ms: 100\n  attempts: 0\n", &cfg);
    cr_assert_null(cfg);
    cr_assert(strstr(errs, "4:13: invalid value \"0\" for \"attempts\": must be 1..100\n") != NULL,
              "%s", errs);
    free(errs);
    errs = load("retry:\n  backoff_min_ms: 500\n  backoff_max_ms: 100\n", &cfg);
    cr_assert_null(cfg);
    cr_assert(strstr(errs, "\"backoff_min_ms\" (500) is larger than \"backoff_max_ms\" (100)") !=
                  NULL,
              "%s", errs);
    free(errs);
}

Test(config, reports_every_error_with_its_position)
{
    unsetenv("PJ_TEST_UNSET");
    Config *cfg;
    char *errs = load("bacth: 10\n"
                      "batch: 0\n"
                      "redis:\n  url: redis://h:1/0\n  colour: red\n"
                      "postgres:\n  conninfo: \"password=${PJ_TEST_UNSET}\"\n"
                      "log_level: loud\n"
                      "http: [1, 2]\n"
                      "set_based: yes\n"
                      "parallel_apply: 17\n",
                      &cfg);
    cr_assert_null(cfg);
    cr_assert(strstr(errs,
                     "1:1: unrecognized key \"bacth\": expected one of redis, postgres, http, "
                     "retry, readmodels, batch, block_ms, max_event_bytes, max_read_bytes, "
                     "set_based, parallel_apply, log_level, log_format, stats_interval_s\n") !=
                  NULL,
              "%s", errs);
    cr_assert(strstr(errs, "2:8: invalid value \"0\" for \"batch\": must be 1..10000\n") != NULL,
              "%s", errs);
    cr_assert(
        strstr(errs, "10:12: invalid value \"yes\" for \"set_based\": expected true or false\n") !=
            NULL,
        "%s", errs);
    cr_assert(strstr(errs, "11:17: invalid value \"17\" for \"parallel_apply\": must be 1..16\n") !=
                  NULL,
              "%s", errs);
    cr_assert(strstr(errs, "5:3: unrecognized key \"colour\": expected one of url, event_field, "
                           "consumer, connect_timeout_ms\n") != NULL,
              "%s", errs);
    cr_assert(strstr(errs, "7:13: environment variable \"PJ_TEST_UNSET\" is not set\n") != NULL,
              "%s", errs);
    cr_assert(strstr(errs, "8:12: invalid value \"loud\" for \"log_level\"") != NULL, "%s", errs);
    cr_assert(strstr(errs, "9:7: expected a mapping, got a sequence\n") != NULL, "%s", errs);
    free(errs);
}

Test(config, size_limits_have_bounds)
{
    Config *cfg;
    char *errs = load("max_event_bytes: 1048576\nmax_read_bytes: 2048\n", &cfg);
    cr_assert_str_empty(errs);
    cr_assert_eq(cfg->max_event_bytes, 1048576);
    cr_assert_eq(cfg->max_read_bytes, 2048);
    config_free(cfg);
    free(errs);
    errs = load("max_event_bytes: 1023\nmax_read_bytes: 1073741825\n", &cfg);
    cr_assert_null(cfg);
    cr_expect(strstr(errs, "1:18: invalid value \"1023\" for \"max_event_bytes\": must be "
                           "1024..536870912\n") != NULL,
              "%s", errs);
    cr_expect(strstr(errs, "2:17: invalid value \"1073741825\" for \"max_read_bytes\": must be "
                           "1024..1073741824\n") != NULL,
              "%s", errs);
    free(errs);
}

Test(config, rejects_bad_redis_url_at_its_position)
{
    Config *cfg;
    char *errs = load("redis:\n  url: http://localhost\n", &cfg);
    cr_assert_null(cfg);
    cr_assert(strstr(errs, "2:8: invalid Redis URL") != NULL, "%s", errs);
    free(errs);
}

Test(config, missing_file_is_an_error_unless_allowed)
{
    Config *cfg = NULL;
    Diagnostics d = {0};
    cr_assert_lt(config_load("/nonexistent/projector.yaml", false, pg_conninfo_parses, &cfg, &d),
                 0);
    cr_assert_eq(d.count, 1);
    cr_assert(strstr(d.items[0].message, "could not open file") != NULL);
    diag_done(&d);
    cr_assert_eq(config_load("/nonexistent/projector.yaml", true, pg_conninfo_parses, &cfg, &d), 0);
    cr_assert_eq(cfg->batch, 1000);
    config_free(cfg);
}

Test(config, parses_redis_urls)
{
    RedisAddr a;
    PjError err;
    cr_assert_eq(redis_addr_parse("redis://localhost", &a, &err), 0);
    cr_assert_str_eq(a.host, "localhost");
    cr_assert_eq(a.port, 6379);
    cr_assert_null(a.user);
    cr_assert_null(a.password);
    redis_addr_done(&a);
    cr_assert_eq(redis_addr_parse("redis://:p%40ss@h:7000/15", &a, &err), 0);
    cr_assert_null(a.user);
    cr_assert_str_eq(a.password, "p@ss");
    cr_assert_eq(a.db, 15);
    redis_addr_done(&a);
    cr_assert_lt(redis_addr_parse("redis://h:99999", &a, &err), 0);
    cr_assert_lt(redis_addr_parse("redis://h:1/x", &a, &err), 0);
    cr_assert_lt(redis_addr_parse("redis://", &a, &err), 0);
}

/* The user and password of a Redis URL are percent-decoded (RFC 3986): "@", ":", "/" and
 * "%" itself can be part of them. */
Test(config, redis_url_user_and_password_are_percent_decoded)
{
    static const struct {
        const char *url, *user, *password;
    } cases[] = {
        {"redis://app:p%40ss%3Aw%2Frd%25@h:1/2", "app", "p@ss:w/rd%"},
        {"redis://us%65r%3a1:x@h", "user:1", "x"},
        {"redis://%2f%2F@h", NULL, "//"},
        {"redis://app:a:b@c@h:7", "app", "a:b@c"}, /* unencoded: the last "@" ends it */
        {"redis://app:@h", "app", ""},
        {"redis://app:%C3%A9@h", "app", "\xc3\xa9"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        RedisAddr a;
        PjError err;
        cr_assert_eq(redis_addr_parse(cases[i].url, &a, &err), 0, "%s: %s", cases[i].url,
                     err.message);
        if (cases[i].user == NULL)
            cr_expect_null(a.user, "%s", cases[i].url);
        else
            cr_expect_str_eq(a.user, cases[i].user, "%s", cases[i].url);
        cr_expect_str_eq(a.password, cases[i].password, "%s", cases[i].url);
        cr_expect_str_eq(a.host, "h", "%s", cases[i].url);
        redis_addr_done(&a);
    }
}

/* A malformed escape is refused, and the message never repeats the password. */
Test(config, redis_url_malformed_escape_is_refused_without_its_text)
{
    static const struct {
        const char *url, *part;
    } bad[] = {
        {"redis://app:Secret%4@h", "password"},   {"redis://app:Secret%@h", "password"},
        {"redis://app:Secret%zz1@h", "password"}, {"redis://app:Secret%00x@h", "password"},
        {"redis://Secret%G1:x@h", "user name"},   {"redis://Secret%4:x@h", "user name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        RedisAddr a = {0};
        PjError err;
        cr_assert_eq(redis_addr_parse(bad[i].url, &a, &err), -PJ_EINVAL, "%s accepted", bad[i].url);
        cr_expect(strstr(err.message, bad[i].part) != NULL, "%s: %s", bad[i].url, err.message);
        cr_expect(strstr(err.message, "Secret") == NULL, "the error repeats the secret: %s",
                  err.message);
    }
    Config *cfg;
    char *errs = load("redis:\n  url: \"redis://app:Secret%zz@127.0.0.1:6379/0\"\n", &cfg);
    cr_assert_null(cfg);
    cr_expect(strstr(errs, "2:8: invalid Redis URL: the password has a \"%\"") != NULL, "%s", errs);
    cr_expect(strstr(errs, "Secret") == NULL, "%s", errs);
    free(errs);
}

Test(config, unparsable_conninfo_is_reported_without_its_text)
{
    Config *cfg;
    char *errs = load("postgres:\n  conninfo: \"host=db password=Secret42 trailing\"\n", &cfg);
    cr_assert_null(cfg);
    cr_assert(strstr(errs, "2:13: invalid value for \"conninfo\"") != NULL, "%s", errs);
    cr_assert(strstr(errs, "Secret42") == NULL, "the error repeats the password: %s", errs);
    free(errs);
}

/* A value taken from the environment is quoted as written (the variable's name), never as
 * what it expanded to; an unterminated "${" names the key, not the value. */
Test(config, errors_never_echo_a_secret)
{
    Config *cfg;
    setenv("PJ_TEST_SECRET", "hunter2-secret", 1);
    char *errs = load("http:\n"
                      "  max_connections: \"${PJ_TEST_SECRET}\"\n"
                      "postgres:\n"
                      "  conninfo: \"password=abc${DEF host=x\"\n",
                      &cfg);
    cr_assert_null(cfg);
    cr_expect(strstr(errs, "hunter2") == NULL && strstr(errs, "abc") == NULL, "%s", errs);
    cr_expect(strstr(errs, "2:20: invalid value \"${PJ_TEST_SECRET}\" for \"max_connections\": "
                           "must be 16..100000\n") != NULL,
              "%s", errs);
    cr_expect(strstr(errs, "4:13: unterminated \"${\" in the value of \"conninfo\"\n") != NULL,
              "%s", errs);
    free(errs);
    unsetenv("PJ_TEST_SECRET");
}

/* Loads text from a file of the given mode; returns the config (NULL when it fails). */
static Config *load_with_mode(const char *text, mode_t mode)
{
    char *path = write_tmp(text);
    Diagnostics d = {0};
    Config *cfg = NULL;
    cr_assert_eq(chmod(path, mode), 0);
    cr_assert_eq(config_load(path, false, pg_conninfo_parses, &cfg, &d), 0);
    diag_done(&d);
    unlink(path);
    free(path);
    return cfg;
}

Test(config, a_literal_secret_in_a_readable_file_is_warned_about)
{
    static const char *const literal[] = {
        "postgres:\n  conninfo: \"host=db password=hunter2\"\n",
        "redis:\n  url: redis://app:hunter2@127.0.0.1:6379/0\n",
        "http:\n  token: 0123456789abcdef\n",
    };
    setenv("PJ_TEST_SECRET", "hunter2", 1);
    for (size_t i = 0; i < sizeof literal / sizeof literal[0]; i++) {
        Config *cfg = load_with_mode(literal[i], 0644);
        cr_assert_not_null(cfg->secret_warning, "case %zu", i);
        cr_expect(strstr(cfg->secret_warning, ":2:") != NULL, "%s", cfg->secret_warning);
        cr_expect(strstr(cfg->secret_warning, "hunter2") == NULL, "%s", cfg->secret_warning);
        config_free(cfg);
        cfg = load_with_mode(literal[i], 0600);
        cr_expect_null(cfg->secret_warning, "case %zu: mode 600 is private", i);
        config_free(cfg);
    }
    Config *cfg = load_with_mode("postgres:\n  conninfo: \"host=db password=${PJ_TEST_SECRET}\"\n"
                                 "redis:\n  url: redis://127.0.0.1:6379/0\n",
                                 0644);
    cr_expect_null(cfg->secret_warning, "secrets from the environment are not in the file");
    config_free(cfg);
    unsetenv("PJ_TEST_SECRET");
}

/* log_format: logfmt by default, json by choice, anything else refused with its place. */
Test(config, log_format_is_logfmt_or_json)
{
    Config *cfg;
    char *errs = load("log_format: json\n", &cfg);
    cr_assert_not_null(cfg, "%s", errs);
    cr_assert_eq(cfg->log_format, LOG_FORMAT_JSON);
    config_free(cfg);
    free(errs);
    errs = load("batch: 10\n", &cfg);
    cr_assert_not_null(cfg, "%s", errs);
    cr_assert_eq(cfg->log_format, LOG_FORMAT_LOGFMT);
    config_free(cfg);
    free(errs);
    errs = load("log_format: xml\n", &cfg);
    cr_assert_null(cfg);
    cr_assert(
        strstr(errs, "1:13: invalid value \"xml\" for \"log_format\": expected logfmt or json") !=
            NULL,
        "%s", errs);
    free(errs);
}
