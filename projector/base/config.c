/* config.c - projector.yaml -> Config: the key table, defaults, bounds, ${ENV} expansion.
 *
 * Parse everything, validate everything, then hand back a Config: a file with errors never
 * produces a half-filled Config. Errors cite the file, line and column of the value.
 */
#include "base/config.h"

#include <assert.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/yamlsrc.h"

typedef enum { KEY_STRING, KEY_INT, KEY_BOOL, KEY_LOGLEVEL, KEY_LOGFORMAT } KeyType;

typedef struct ConfigKey {
    const char *section; /* NULL for top-level keys */
    const char *name;
    size_t offset;
    const char *default_value;
    long min, max;
    KeyType type;
    bool secret; /* may hold a password or token: never echoed, not to be world-readable */
} ConfigKey;

#define KEY(sec, key, kind, field, def, lo, hi, is_secret)                                         \
    {                                                                                              \
        .section = (sec), .name = (key), .offset = offsetof(Config, field),                        \
        .default_value = (def), .min = (lo), .max = (hi), .type = (kind), .secret = (is_secret)    \
    }
#define STR_KEY(sec, key, field, def) KEY(sec, key, KEY_STRING, field, def, 0, 0, false)
#define SECRET_KEY(sec, key, field, def) KEY(sec, key, KEY_STRING, field, def, 0, 0, true)
#define INT_KEY(sec, key, field, def, lo, hi) KEY(sec, key, KEY_INT, field, def, lo, hi, false)

static const ConfigKey config_keys[] = {
    SECRET_KEY("redis", "url", redis_url, "redis://127.0.0.1:6379/0"),
    STR_KEY("redis", "event_field", event_field, "event"),
    STR_KEY("redis", "consumer", consumer, "projector"),
    INT_KEY("redis", "connect_timeout_ms", connect_timeout_ms, "2000", 10, 600000),
    SECRET_KEY("postgres", "conninfo", pg_conninfo, "host=127.0.0.1 port=5432 dbname=app"),
    STR_KEY("postgres", "schema", pg_schema, "projector"),
    STR_KEY("http", "listen", http_listen, "127.0.0.1:8080"),
    SECRET_KEY("http", "token", http_token, ""),
    INT_KEY("http", "max_connections", http_max_connections, "1024", 16, 100000),
    INT_KEY("http", "max_request_bytes", http_max_request_bytes, "16384", 4096, 1048576),
    INT_KEY("http", "max_waiters", http_max_waiters, "896", 1, 1000000),
    INT_KEY("http", "reserved_connections", http_reserved_connections, "64", 1, 10000),
    INT_KEY("http", "header_timeout_ms", http_header_timeout_ms, "5000", 100, 600000),
    INT_KEY("http", "wait_timeout_ms", wait_timeout_ms, "5000", 0, 3600000),
    INT_KEY("http", "wait_timeout_max_ms", wait_timeout_max_ms, "60000", 1, 3600000),
    INT_KEY("retry", "backoff_min_ms", backoff_min_ms, "100", 1, 60000),
    INT_KEY("retry", "backoff_max_ms", backoff_max_ms, "10000", 1, 3600000),
    INT_KEY("retry", "attempts", retry_attempts, "1", 1, 100),
    STR_KEY(NULL, "readmodels", readmodels_dir, "readmodels/"),
    INT_KEY(NULL, "batch", batch, "1000", 1, 10000),
    INT_KEY(NULL, "block_ms", block_ms, "1000", 1, 60000),
    INT_KEY(NULL, "max_event_bytes", max_event_bytes, "4194304", 1024, 536870912),
    INT_KEY(NULL, "max_read_bytes", max_read_bytes, "33554432", 1024, 1073741824),
    KEY(NULL, "set_based", KEY_BOOL, set_based, "true", 0, 0, false),
    INT_KEY(NULL, "parallel_apply", parallel_apply, "1", 1, PARALLEL_APPLY_MAX),
    KEY(NULL, "log_level", KEY_LOGLEVEL, log_level, "info", 0, 0, false),
    KEY(NULL, "log_format", KEY_LOGFORMAT, log_format, "logfmt", 0, 0, false),
    INT_KEY(NULL, "stats_interval_s", stats_interval_s, "60", 0, 86400),
};

static const char *const config_sections[] = {"redis", "postgres", "http", "retry"};

/* Expands ${NAME} in s, the value of key, from the environment. Returns a new string or
 * NULL with err set when a variable is unset or a "${" is not closed. The message names
 * the key, never the value: it may hold a secret. */
static char *expand_env(const char *s, const char *key, PjError *err)
{
    StrBuf sb = {0};
    strbuf_append(&sb, "");
    for (const char *p = s; *p != '\0';) {
        if (p[0] != '$' || p[1] != '{') {
            strbuf_appendn(&sb, p++, 1);
            continue;
        }
        const char *end = strchr(p + 2, '}');
        if (end == NULL) {
            strbuf_done(&sb);
            pj_error_set(err, PJ_EINVAL, "unterminated \"${\" in the value of \"%s\"", key);
            return NULL;
        }
        char *name = xstrndup(p + 2, (size_t)(end - p - 2));
        const char *value = getenv(name);
        if (value == NULL) {
            pj_error_set(err, PJ_EINVAL, "environment variable \"%s\" is not set", name);
            free(name);
            strbuf_done(&sb);
            return NULL;
        }
        strbuf_append(&sb, value);
        free(name);
        p = end + 1;
    }
    return strbuf_take(&sb);
}

void redis_addr_done(RedisAddr *addr)
{
    if (addr->password != NULL)
        explicit_bzero(addr->password, strlen(addr->password));
    free(addr->host);
    free(addr->user);
    free(addr->password);
    *addr = (RedisAddr){0};
}

static int parse_port_db(const char *s, long lo, long hi, int *ret)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -PJ_EINVAL;
    *ret = (int)v;
    return 0;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes the %XX escapes of s[0 .. len) (RFC 3986 userinfo: a password with "@", ":" or
 * "/" is written with %40, %3A, %2F; a "%" itself as %25). NULL on a "%" without two hex
 * digits after it, or on %00, which would end the C string early. The caller's message
 * names the part, never its text: it may be the password. */
static char *percent_decode(const char *s, size_t len)
{
    char *out = xmalloc(len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            out[n++] = s[i];
            continue;
        }
        int hi = i + 2 < len ? hex_digit(s[i + 1]) : -1;
        int lo = hi >= 0 ? hex_digit(s[i + 2]) : -1;
        if (lo < 0 || (hi == 0 && lo == 0)) {
            explicit_bzero(out, n);
            free(out);
            return NULL;
        }
        out[n++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out[n] = '\0';
    return out;
}

#define REDIS_URL_FORM "redis://[user:password@]host[:port][/db]"

static int bad_escape(PjError *err, const char *part)
{
    return pj_error_set(err, PJ_EINVAL,
                        "invalid Redis URL: the %s has a \"%%\" not followed by two hex digits, "
                        "or an escaped NUL (percent-encode it: \"%%\" as %%25, \"@\" as %%40, "
                        "\":\" as %%3A, \"/\" as %%2F)",
                        part);
}

/* user:password, password alone, or user: each part percent-decoded. */
static int parse_userinfo(const char *s, size_t len, RedisAddr *a, PjError *err)
{
    const char *colon = memchr(s, ':', len);
    if (colon == NULL) {
        a->password = percent_decode(s, len); /* redis://secret@host: a password alone */
    } else {
        if (colon > s && (a->user = percent_decode(s, (size_t)(colon - s))) == NULL)
            return bad_escape(err, "user name");
        a->password = percent_decode(colon + 1, len - (size_t)(colon - s) - 1);
    }
    return a->password == NULL ? bad_escape(err, "password") : 0;
}

int redis_addr_parse(const char *url, RedisAddr *ret, PjError *err)
{
    static const char scheme[] = "redis://";
    RedisAddr a = {.port = 6379, .db = 0};
    if (strncmp(url, scheme, sizeof scheme - 1) != 0)
        return pj_error_set(err, PJ_EINVAL, "invalid Redis URL: expected " REDIS_URL_FORM);
    const char *rest = url + sizeof scheme - 1;
    const char *at = strrchr(rest, '@');
    if (at != NULL) {
        if (parse_userinfo(rest, (size_t)(at - rest), &a, err) < 0) {
            redis_addr_done(&a);
            return -PJ_EINVAL;
        }
        rest = at + 1;
    }
    const char *slash = strchr(rest, '/');
    size_t hostport_len = slash != NULL ? (size_t)(slash - rest) : strlen(rest);
    char *hostport = xstrndup(rest, hostport_len);
    char *colon = strrchr(hostport, ':');
    int r = 0;
    if (colon != NULL) {
        *colon = '\0';
        r = parse_port_db(colon + 1, 1, 65535, &a.port);
    }
    if (r == 0 && slash != NULL && slash[1] != '\0')
        r = parse_port_db(slash + 1, 0, 100000, &a.db);
    a.host = xstrdup(hostport);
    free(hostport);
    if (r < 0 || a.host[0] == '\0') {
        redis_addr_done(&a);
        return pj_error_set(err, PJ_EINVAL, "invalid Redis URL: expected " REDIS_URL_FORM);
    }
    *ret = a;
    return 0;
}

static const ConfigKey *find_key(const char *section, const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(config_keys); i++) {
        const ConfigKey *k = &config_keys[i];
        bool same_section =
            (section == NULL && k->section == NULL) ||
            (section != NULL && k->section != NULL && strcmp(section, k->section) == 0);
        if (same_section && strcmp(name, k->name) == 0)
            return k;
    }
    return NULL;
}

static bool is_section(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(config_sections); i++)
        if (strcmp(name, config_sections[i]) == 0)
            return true;
    return false;
}

/* The keys a mapping accepts, for "expected one of" messages. */
static char *expected_keys(const char *section)
{
    StrBuf sb = {0};
    if (section == NULL)
        for (size_t i = 0; i < ARRAY_SIZE(config_sections); i++)
            strbuf_appendf(&sb, "%s%s", sb.len ? ", " : "", config_sections[i]);
    for (size_t i = 0; i < ARRAY_SIZE(config_keys); i++) {
        const ConfigKey *k = &config_keys[i];
        bool match = section == NULL ? k->section == NULL
                                     : k->section != NULL && strcmp(k->section, section) == 0;
        if (match)
            strbuf_appendf(&sb, "%s%s", sb.len ? ", " : "", k->name);
    }
    return strbuf_take(&sb);
}

/* Stores text (already expanded) into the field of k; adds a diagnostic on bad values,
 * which quotes shown: the value as written, so that a variable's name appears and never
 * what it expanded to. */
static void store_value(Config *cfg, const ConfigKey *k, const char *text, const char *shown,
                        const char *file, int line, int col, Diagnostics *diag)
{
    char *field = (char *)cfg + k->offset;
    if (k->type == KEY_STRING) {
        free(*(char **)field);
        *(char **)field = xstrdup(text);
    } else if (k->type == KEY_BOOL) {
        if (strcmp(text, "true") == 0 || strcmp(text, "false") == 0)
            *(bool *)field = strcmp(text, "true") == 0;
        else
            diag_add(diag, file, line, col,
                     "invalid value \"%s\" for \"%s\": expected true or false", shown, k->name);
    } else if (k->type == KEY_LOGLEVEL) {
        if (log_level_parse(text, (LogLevel *)field) < 0)
            diag_add(diag, file, line, col,
                     "invalid value \"%s\" for \"%s\": expected one of error, warn, info, debug",
                     shown, k->name);
    } else if (k->type == KEY_LOGFORMAT) {
        if (log_format_parse(text, (LogFormat *)field) < 0)
            diag_add(diag, file, line, col,
                     "invalid value \"%s\" for \"%s\": expected logfmt or json", shown, k->name);
    } else {
        char *end;
        errno = 0;
        long v = strtol(text, &end, 10);
        if (errno != 0 || end == text || *end != '\0' || v < k->min || v > k->max)
            diag_add(diag, file, line, col, "invalid value \"%s\" for \"%s\": must be %ld..%ld",
                     shown, k->name, k->min, k->max);
        else
            *(int *)field = (int)v;
    }
}

/* True when text, the value of secret key k, holds a secret: a token, a password in a
 * Redis URL's user part, a password in a connection string. */
static bool holds_secret(const ConfigKey *k, const char *text)
{
    assert(k->secret);
    if (strcmp(k->name, "token") == 0)
        return text[0] != '\0';
    if (strcmp(k->name, "url") == 0) {
        const char *at = strrchr(text, '@'), *colon = strchr(text + strlen("redis://"), ':');
        return strncmp(text, "redis://", 8) == 0 && at != NULL && colon != NULL && colon < at;
    }
    return strstr(text, "password") != NULL;
}

/* Remembers the first key that holds a literal secret, for config_load's warning. */
static void note_literal_secret(Config *cfg, const ConfigKey *k, const char *file, int line,
                                int col)
{
    if (cfg->literal_secret == NULL)
        cfg->literal_secret = xasprintf("%s:%d:%d: \"%s\"", file, line, col, k->name);
}

static void load_scalar(Config *cfg, const ConfigKey *k, const YamlNode *value, const char *file,
                        Diagnostics *diag)
{
    int line = yamlsrc_line(value), col = yamlsrc_column(value);
    if (!yamlsrc_is_scalar(value)) {
        diag_add(diag, file, line, col, "invalid value for \"%s\": expected a scalar, got %s",
                 k->name, yamlsrc_kind_name(value));
        return;
    }
    PjError err;
    const char *raw = yamlsrc_scalar(value);
    char *text = expand_env(raw, k->name, &err);
    if (text == NULL) {
        diag_add(diag, file, line, col, "%s", err.message);
        return;
    }
    store_value(cfg, k, text, raw, file, line, col, diag);
    if (k->secret && strstr(raw, "${") == NULL && holds_secret(k, text))
        note_literal_secret(cfg, k, file, line, col);
    explicit_bzero(text, strlen(text));
    free(text);
}

static void load_mapping(Config *cfg, const YamlSrc *src, const YamlNode *map, const char *section,
                         Diagnostics *diag)
{
    const char *file = yamlsrc_file(src);
    if (!yamlsrc_is_mapping(map)) {
        diag_add(diag, file, yamlsrc_line(map), yamlsrc_column(map), "expected a mapping, got %s",
                 yamlsrc_kind_name(map));
        return;
    }
    for (size_t i = 0; i < yamlsrc_map_count(map); i++) {
        const YamlNode *key = yamlsrc_map_key(src, map, i);
        const YamlNode *value = yamlsrc_map_value(src, map, i);
        const char *name = yamlsrc_scalar(key);
        const ConfigKey *k = name != NULL ? find_key(section, name) : NULL;
        if (section == NULL && name != NULL && is_section(name)) {
            load_mapping(cfg, src, value, name, diag);
        } else if (k != NULL) {
            load_scalar(cfg, k, value, file, diag);
        } else {
            char *expected = expected_keys(section);
            diag_add(diag, file, yamlsrc_line(key), yamlsrc_column(key),
                     "unrecognized key \"%s\": expected one of %s", name ? name : "?", expected);
            free(expected);
        }
    }
}

static void set_defaults(Config *cfg)
{
    Diagnostics ignored = {0};
    for (size_t i = 0; i < ARRAY_SIZE(config_keys); i++)
        store_value(cfg, &config_keys[i], config_keys[i].default_value,
                    config_keys[i].default_value, NULL, 0, 0, &ignored);
    diag_done(&ignored);
}

#define CONFIG_TOKEN_MAX 1024

/* The value node of http.<key> in src, or NULL when the file does not set it. */
static YamlNode *http_node(const YamlSrc *src, const char *key)
{
    YamlNode *h = src != NULL ? yamlsrc_map_get(src, yamlsrc_root(src), "http") : NULL;
    return h != NULL ? yamlsrc_map_get(src, h, key) : NULL;
}

/* The token travels in an Authorization header: visible ASCII without spaces, and long
 * enough not to be guessed. The message never repeats the value, which is a secret. */
static void check_token(const Config *cfg, const YamlSrc *src, Diagnostics *diag)
{
    size_t n = strlen(cfg->http_token);
    bool ok = n <= CONFIG_TOKEN_MAX;
    for (size_t i = 0; ok && i < n; i++) {
        unsigned char ch = (unsigned char)cfg->http_token[i];
        ok = ch > ' ' && ch < 0x7f;
    }
    if (ok && (n == 0 || n >= CONFIG_TOKEN_MIN))
        return;
    YamlNode *t = http_node(src, "token");
    if (!ok)
        diag_add(diag, cfg->path, t ? yamlsrc_line(t) : 0, t ? yamlsrc_column(t) : 0,
                 "invalid value for \"token\": expected at most %d visible ASCII characters "
                 "without spaces",
                 CONFIG_TOKEN_MAX);
    else
        diag_add(diag, cfg->path, t ? yamlsrc_line(t) : 0, t ? yamlsrc_column(t) : 0,
                 "invalid value for \"token\": expected at least %d characters (a shorter token "
                 "can be guessed)",
                 CONFIG_TOKEN_MIN);
}

/* Long-polls must leave the reserved connections free: otherwise waiters alone can take
 * every connection, and /healthz and /readyz stop answering. The error points at
 * max_waiters, or at the first of the keys the file sets. */
static void check_http_limits(const Config *cfg, const YamlSrc *src, Diagnostics *diag)
{
    static const char *const keys[] = {"max_waiters", "reserved_connections", "max_connections"};
    int room = cfg->http_max_connections - cfg->http_reserved_connections;
    YamlNode *at = NULL;

    for (size_t i = 0; i < ARRAY_SIZE(keys) && at == NULL; i++)
        at = http_node(src, keys[i]);
    if (room < 1)
        diag_add(diag, cfg->path, at ? yamlsrc_line(at) : 0, at ? yamlsrc_column(at) : 0,
                 "\"reserved_connections\" (%d) must be below \"max_connections\" (%d)",
                 cfg->http_reserved_connections, cfg->http_max_connections);
    else if (cfg->http_max_waiters >= room)
        diag_add(diag, cfg->path, at ? yamlsrc_line(at) : 0, at ? yamlsrc_column(at) : 0,
                 "\"max_waiters\" (%d) must be below \"max_connections\" (%d) minus "
                 "\"reserved_connections\" (%d), so at most %d: the reserved connections keep "
                 "/healthz and /readyz answering while every waiter waits",
                 cfg->http_max_waiters, cfg->http_max_connections, cfg->http_reserved_connections,
                 room - 1);
}

/* The parser's own errors may quote the text around the mistake, which may be the
 * password: say only that it does not parse, and how values with spaces are written. */
static void check_conninfo(const Config *cfg, ConfigConninfoCheck parses, const YamlSrc *src,
                           Diagnostics *diag)
{
    if (parses == NULL || parses(cfg->pg_conninfo))
        return;
    YamlNode *p = src != NULL ? yamlsrc_map_get(src, yamlsrc_root(src), "postgres") : NULL;
    YamlNode *c = p != NULL ? yamlsrc_map_get(src, p, "conninfo") : NULL;
    diag_add(diag, cfg->path, c ? yamlsrc_line(c) : 0, c ? yamlsrc_column(c) : 0,
             "invalid value for \"conninfo\": expected a libpq connection string of key=value "
             "pairs (single-quote values that contain spaces or quotes, after ${...} expansion)");
}

/* Checks relationships between keys and derives the parsed forms. */
static void finish(Config *cfg, ConfigConninfoCheck conninfo_parses, const YamlSrc *src,
                   Diagnostics *diag)
{
    const char *file = cfg->path;
    PjError err;
    if (redis_addr_parse(cfg->redis_url, &cfg->redis, &err) < 0) {
        YamlNode *r = src != NULL ? yamlsrc_map_get(src, yamlsrc_root(src), "redis") : NULL;
        YamlNode *u = r != NULL ? yamlsrc_map_get(src, r, "url") : NULL;
        diag_add(diag, file, u ? yamlsrc_line(u) : 0, u ? yamlsrc_column(u) : 0, "%s", err.message);
    }
    if (!sql_ident_is_safe(cfg->pg_schema))
        diag_add(diag, file, 0, 0,
                 "invalid value \"%s\" for \"schema\": expected a lower-case SQL name",
                 cfg->pg_schema);
    check_token(cfg, src, diag);
    check_http_limits(cfg, src, diag);
    check_conninfo(cfg, conninfo_parses, src, diag);
    if (cfg->wait_timeout_ms > cfg->wait_timeout_max_ms)
        diag_add(diag, file, 0, 0,
                 "\"wait_timeout_ms\" (%d) is larger than \"wait_timeout_max_ms\" (%d)",
                 cfg->wait_timeout_ms, cfg->wait_timeout_max_ms);
    if (cfg->backoff_min_ms > cfg->backoff_max_ms)
        diag_add(diag, file, 0, 0, "\"backoff_min_ms\" (%d) is larger than \"backoff_max_ms\" (%d)",
                 cfg->backoff_min_ms, cfg->backoff_max_ms);
    if (cfg->readmodels_dir[0] != '/' && src != NULL) {
        char *copy = xstrdup(cfg->path);
        char *joined = xasprintf("%s/%s", dirname(copy), cfg->readmodels_dir);
        free(cfg->readmodels_dir);
        cfg->readmodels_dir = joined;
        free(copy);
    }
}

/* A literal secret in a file that group or others can read: the warning the caller logs. */
static void warn_if_readable(Config *cfg)
{
    struct stat st;

    if (cfg->literal_secret == NULL || stat(cfg->path, &st) != 0 ||
        (st.st_mode & (S_IRGRP | S_IROTH)) == 0)
        return;
    cfg->secret_warning = xasprintf(
        "%s holds a literal password or token, and the file can be read by group or others: "
        "chmod 600 it, or take the secret from the environment with ${NAME}",
        cfg->literal_secret);
}

int config_load(const char *path, bool missing_ok, ConfigConninfoCheck conninfo_parses,
                Config **ret, Diagnostics *diag)
{
    Config *cfg = xcalloc(1, sizeof *cfg);
    YamlSrc *src = NULL;
    size_t before = diag->count;
    cfg->path = xstrdup(path);
    set_defaults(cfg);
    if (missing_ok && access(path, F_OK) != 0) {
        /* no file: defaults only */
    } else if (yamlsrc_load_file(path, &src, diag) < 0) {
        config_free(cfg);
        return -PJ_EINVAL;
    } else if (yamlsrc_root(src) != NULL) {
        load_mapping(cfg, src, yamlsrc_root(src), NULL, diag);
    }
    if (diag->count == before)
        finish(cfg, conninfo_parses, src, diag);
    yamlsrc_free(src);
    warn_if_readable(cfg);
    if (diag->count > before) {
        config_free(cfg);
        return -PJ_EINVAL;
    }
    *ret = cfg;
    return 0;
}

/* Strings of the config may hold secrets (conninfo, URL, token): wipe before freeing. */
static void free_wiped(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

Config *config_free(Config *cfg)
{
    if (cfg == NULL)
        return NULL;
    for (size_t i = 0; i < ARRAY_SIZE(config_keys); i++)
        if (config_keys[i].type == KEY_STRING)
            free_wiped(*(char **)((char *)cfg + config_keys[i].offset));
    redis_addr_done(&cfg->redis); /* wipes the password */
    free(cfg->literal_secret);
    free(cfg->secret_warning);
    free(cfg->path);
    free(cfg);
    return NULL;
}
