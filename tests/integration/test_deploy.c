/* test_deploy.c - what deploy/ promises about the running daemon. Its /metrics, after the
 * sample feed, passes `promtool check metrics`; every projector_* metric, label and state
 * that the Grafana dashboard (deploy/grafana/projector.json) and the alert rules
 * (deploy/prometheus/alerts.yaml) name is one that /metrics exports; and the sample
 * producer of the container image (deploy/container/publish-sample.sh) publishes the feed
 * once. The static checks of deploy/ are tests/check_deploy.py's, run by tests/lint.sh.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/util.h"
#include "base/yamlsrc.h"
#include "testenv.h"

#define DEPLOY_DIR PROJECTOR_SOURCE_DIR "/deploy"
#define IDENT_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
/* Labels Prometheus adds when it scrapes: never in /metrics, always in the queries. */
static const char *const scrape_labels[] = {"job", "instance"};

/* ---- what the queries use ---- */

typedef struct Names {
    char **items;
    size_t count, cap;
} Names;

static void names_add(Names *n, const char *s, size_t len)
{
    for (size_t i = 0; i < n->count; i++)
        if (strlen(n->items[i]) == len && strncmp(n->items[i], s, len) == 0)
            return;
    xgrow((void **)&n->items, &n->cap, n->count + 1, sizeof *n->items);
    n->items[n->count++] = xstrndup(s, len);
}

static bool names_has(const Names *n, const char *s)
{
    for (size_t i = 0; i < n->count; i++)
        if (strcmp(n->items[i], s) == 0)
            return true;
    return false;
}

static void names_done(Names *n)
{
    for (size_t i = 0; i < n->count; i++)
        free(n->items[i]);
    free(n->items);
}

/* The metric names, label names and "state" values that a set of PromQL queries use (or
 * that a /metrics exposition holds: its samples are written the same way). */
typedef struct Usage {
    Names metrics, labels, states;
} Usage;

static bool ident_start(const char *expr, const char *p)
{
    return p == expr || strchr(IDENT_CHARS, p[-1]) == NULL;
}

static void scan_metrics(Usage *u, const char *expr)
{
    for (const char *p = strstr(expr, "projector_"); p != NULL; p = strstr(p + 1, "projector_"))
        if (ident_start(expr, p))
            names_add(&u->metrics, p, strspn(p, IDENT_CHARS));
}

/* A state="a" or state=~"a|b" matcher: each alternative is a state. */
static void add_states(Usage *u, const char *value, size_t len)
{
    while (len > 0) {
        const char *bar = memchr(value, '|', len);
        size_t n = bar != NULL ? (size_t)(bar - value) : len;
        names_add(&u->states, value, n);
        len -= bar != NULL ? n + 1 : n;
        value += bar != NULL ? n + 1 : n;
    }
}

/* {label="value", ...}: every label name, and the values of "state". */
static void scan_matchers(Usage *u, const char *expr)
{
    for (const char *p = strchr(expr, '{'); p != NULL; p = strchr(p, '{')) {
        p++;
        for (;;) {
            p += strspn(p, " ,\n");
            size_t n = strspn(p, IDENT_CHARS);
            if (n == 0)
                break;
            const char *label = p;
            p += n + strspn(p + n, " ");
            p += strspn(p, "=!~");
            p += strspn(p, " ");
            if (*p != '"')
                break;
            const char *value = ++p;
            while (*p != '\0' && *p != '"')
                p += p[0] == '\\' && p[1] != '\0' ? 2 : 1;
            names_add(&u->labels, label, n);
            if (n == 5 && strncmp(label, "state", 5) == 0 && memchr(value, '$', p - value) == NULL)
                add_states(u, value, (size_t)(p - value));
            if (*p == '"')
                p++;
        }
    }
}

/* by (a, b) and without (a, b). */
static void scan_groupings(Usage *u, const char *expr)
{
    static const char *const words[] = {"by", "without"};
    for (size_t w = 0; w < ARRAY_SIZE(words); w++) {
        size_t wl = strlen(words[w]);
        for (const char *p = strstr(expr, words[w]); p != NULL; p = strstr(p + 1, words[w])) {
            const char *q = p + wl + strspn(p + wl, " ");
            if (!ident_start(expr, p) || *q != '(')
                continue;
            for (q++;;) {
                q += strspn(q, " ,");
                size_t n = strspn(q, IDENT_CHARS);
                if (n == 0)
                    break;
                names_add(&u->labels, q, n);
                q += n;
            }
        }
    }
}

static void usage_scan(Usage *u, const char *expr)
{
    scan_metrics(u, expr);
    scan_matchers(u, expr);
    scan_groupings(u, expr);
}

static void usage_done(Usage *u)
{
    names_done(&u->metrics);
    names_done(&u->labels);
    names_done(&u->states);
}

/* ---- the live exposition ---- */

/* Runs the daemon on the shipped read models, publishes the sample feed, waits until every
 * read model has applied it, and returns the body of GET /metrics (caller frees). */
static char *live_metrics(TestDaemon *d, const char *name)
{
    if (!testenv_have_servers())
        cr_skip_test("no test servers (run tests/run.sh)");
    testenv_daemon_setup(d, name, NULL, 100, 200);
    int n = testenv_publish_file(d->redis, DEPLOY_DIR "/sample/feed.jsonl", NULL);
    cr_assert_eq(n, 14, "the sample feed has 14 entries, published %d", n);
    const char *args[] = {"run", "--config", d->config, NULL};
    d->pid = testenv_spawn(args, d->log);
    cr_assert(testenv_wait_http(d->port, 20000), "no /healthz (log: %s)", d->log);
    cr_assert(testenv_wait_caught_up(d->port, 30000), "the sample was not applied (log: %s)",
              d->log);
    char *body = NULL;
    int status = testenv_http_get(d->port, "/metrics", &body);
    cr_assert_eq(status, 200, "/metrics answered %d (log: %s)", status, d->log);
    cr_assert_not_null(body);
    return body;
}

/* What an exposition holds: its families (# TYPE lines), label names and states. */
static void usage_of_exposition(Usage *u, const char *body)
{
    for (const char *line = body; *line != '\0';) {
        const char *end = strchr(line, '\n');
        size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
        char *text = xstrndup(line, len);
        if (strncmp(text, "# TYPE ", 7) == 0) {
            size_t n = strcspn(text + 7, " ");
            names_add(&u->metrics, text + 7, n);
            /* a histogram's samples are its name with _bucket, _sum and _count */
            static const char *const parts[] = {"_bucket", "_sum", "_count"};
            for (size_t k = 0; strcmp(text + 7 + n, " histogram") == 0 && k < 3; k++) {
                char *sample = xasprintf("%.*s%s", (int)n, text + 7, parts[k]);
                names_add(&u->metrics, sample, strlen(sample));
                free(sample);
            }
        } else if (text[0] != '#')
            scan_matchers(u, text);
        free(text);
        line += end != NULL ? len + 1 : len;
    }
}

/* Fails the test for each metric, label or state that used names and live lacks. */
static void expect_exported(const char *what, const Usage *used, const Usage *live,
                            size_t min_metrics)
{
    cr_assert_geq(used->metrics.count, min_metrics, "%s: only %zu projector_* metrics found", what,
                  used->metrics.count);
    for (size_t i = 0; i < used->metrics.count; i++)
        cr_expect(names_has(&live->metrics, used->metrics.items[i]),
                  "%s names %s, which /metrics does not export", what, used->metrics.items[i]);
    for (size_t i = 0; i < used->labels.count; i++) {
        const char *label = used->labels.items[i];
        bool scraped = strcmp(label, scrape_labels[0]) == 0 || strcmp(label, scrape_labels[1]) == 0;
        cr_expect(scraped || names_has(&live->labels, label),
                  "%s uses label \"%s\", which no metric of /metrics has", what, label);
    }
    for (size_t i = 0; i < used->states.count; i++)
        cr_expect(names_has(&live->states, used->states.items[i]),
                  "%s uses state=\"%s\", which /metrics never reports", what,
                  used->states.items[i]);
}

/* Runs `sh -c cmd` with stdin from the file at path; returns the exit status and the
 * output (stdout and stderr) in *out (caller frees). */
static int run_with_input(const char *cmd, const char *path, char **out)
{
    char *full = xasprintf("%s < '%s' 2>&1", cmd, path);
    FILE *p = popen(full, "r");
    free(full);
    cr_assert_not_null(p, "could not run %s", cmd);
    StrBuf sb = {0};
    char buf[4096];
    for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;)
        strbuf_appendn(&sb, buf, n);
    int status = pclose(p);
    *out = sb.buf != NULL ? strbuf_take(&sb) : xstrdup("");
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- the dashboard and the alert rules ---- */

/* Every "expr" and "definition" string of a Grafana dashboard, at any depth. */
static void dashboard_scan(Usage *u, json_t *node)
{
    const char *key;
    json_t *v;
    size_t i;

    if (json_is_object(node)) {
        json_object_foreach(node, key, v)
        {
            if (json_is_string(v) && (strcmp(key, "expr") == 0 || strcmp(key, "definition") == 0))
                usage_scan(u, json_string_value(v));
            else
                dashboard_scan(u, v);
        }
    } else if (json_is_array(node)) {
        json_array_foreach(node, i, v) dashboard_scan(u, v);
    }
}

/* Every rule's expr of a Prometheus rule file (groups[].rules[].expr). */
static size_t rules_scan(Usage *u, const char *path)
{
    YamlSrc *src = NULL;
    Diagnostics diag = {0};
    size_t exprs = 0;

    int rc = yamlsrc_load_file(path, &src, &diag);
    if (rc < 0)
        diag_print(&diag, stderr);
    cr_assert_eq(rc, 0, "could not read %s", path);
    YamlNode *groups = yamlsrc_map_get(src, yamlsrc_root(src), "groups");
    for (size_t g = 0; groups != NULL && g < yamlsrc_seq_count(groups); g++) {
        YamlNode *rules = yamlsrc_map_get(src, yamlsrc_seq_item(src, groups, g), "rules");
        for (size_t r = 0; rules != NULL && r < yamlsrc_seq_count(rules); r++) {
            YamlNode *expr = yamlsrc_map_get(src, yamlsrc_seq_item(src, rules, r), "expr");
            if (expr != NULL && yamlsrc_scalar(expr) != NULL) {
                usage_scan(u, yamlsrc_scalar(expr));
                exprs++;
            }
        }
    }
    diag_done(&diag);
    (void)yamlsrc_free(src);
    return exprs;
}

/* ---- tests ---- */

Test(deploy, metrics_pass_promtool_check_metrics, .timeout = 120)
{
    TestDaemon d;
    char *body = live_metrics(&d, "deploy_promtool");
    char *path = testenv_write_file(d.dir, "metrics.txt", body), *out = NULL;
    int code = run_with_input("promtool check metrics", path, &out);
    cr_expect_eq(code, 0, "promtool check metrics exited %d:\n%s\n(the exposition: %s)", code, out,
                 path);
    cr_expect_str_empty(out, "promtool check metrics found problems:\n%s", out);
    /* The exposition has every family, the sample's read models and streams. */
    Usage live = {0};
    usage_of_exposition(&live, body);
    cr_expect_geq(live.metrics.count, 12, "only %zu families in /metrics:\n%s", live.metrics.count,
                  body);
    cr_expect(strstr(body, "projector_lag_entries{readmodel=\"orders\",stream=\"customers\"} 0") !=
                  NULL,
              "no lag sample for orders on customers:\n%s", body);
    usage_done(&live);
    free(out);
    free(path);
    free(body);
    testenv_daemon_done(&d);
}

Test(deploy, dashboard_queries_name_exported_metrics, .timeout = 120)
{
    TestDaemon d;
    char *body = live_metrics(&d, "deploy_grafana");
    json_error_t jerr;
    json_t *dash = json_load_file(DEPLOY_DIR "/grafana/projector.json", 0, &jerr);
    cr_assert_not_null(dash, "deploy/grafana/projector.json:%d:%d: %s", jerr.line, jerr.column,
                       jerr.text);
    Usage used = {0}, live = {0};
    dashboard_scan(&used, dash);
    usage_of_exposition(&live, body);
    expect_exported("deploy/grafana/projector.json", &used, &live, 10);
    usage_done(&used);
    usage_done(&live);
    json_decref(dash);
    free(body);
    testenv_daemon_done(&d);
}

Test(deploy, alert_rules_name_exported_metrics, .timeout = 120)
{
    TestDaemon d;
    char *body = live_metrics(&d, "deploy_alerts");
    Usage used = {0}, live = {0};
    size_t exprs = rules_scan(&used, DEPLOY_DIR "/prometheus/alerts.yaml");
    cr_assert_geq(exprs, 8, "only %zu rules in deploy/prometheus/alerts.yaml", exprs);
    usage_of_exposition(&live, body);
    expect_exported("deploy/prometheus/alerts.yaml", &used, &live, 8);
    usage_done(&used);
    usage_done(&live);
    free(body);
    testenv_daemon_done(&d);
}

/* XLEN of a stream in the test's Redis database. */
static long long stream_length(redisContext *c, const char *stream)
{
    redisReply *r = redisCommand(c, "XLEN %s", stream);
    cr_assert(r != NULL && r->type == REDIS_REPLY_INTEGER, "XLEN %s failed", stream);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

Test(deploy, sample_producer_publishes_the_feed_once, .timeout = 60)
{
    if (!testenv_have_servers())
        cr_skip_test("no test servers (run tests/run.sh)");
    int db = testenv_redis_db();
    char *url = testenv_redis_url(db), *feed = xstrdup(PROJECTOR_BIN), *out = NULL;
    redisContext *c = testenv_redis(db);
    strcpy(strrchr(feed, '/') + 1, "feed"); /* built beside the daemon; "feed" is shorter */
    cr_assert(access(feed, X_OK) == 0, "no feed tool at %s (build every target)", feed);
    char *cmd =
        xasprintf("REDIS_URL='%s' FEED='%s' FEED_FILE='%s' sh '%s'", url, feed,
                  DEPLOY_DIR "/sample/feed.jsonl", DEPLOY_DIR "/container/publish-sample.sh");
    for (int run = 1; run <= 2; run++) {
        int code = run_with_input(cmd, "/dev/null", &out);
        cr_assert_eq(code, 0, "run %d of publish-sample.sh exited %d:\n%s", run, code, out);
        if (run == 1)
            cr_expect(strstr(out, "published 14 entries") != NULL, "run 1:\n%s", out);
        else
            cr_expect(strstr(out, "already published") != NULL, "run 2:\n%s", out);
        free(out);
        cr_expect_eq(stream_length(c, "orders"), 10, "after run %d", run);
        cr_expect_eq(stream_length(c, "customers"), 4, "after run %d", run);
    }
    free(cmd);
    redisFree(c);
    free(feed);
    free(url);
}
