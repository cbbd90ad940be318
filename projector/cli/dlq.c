/* dlq.c - `projector dlq`: the arguments of its subcommands, and the run that opens one
 * PostgreSQL session and hands it to the subcommand (dlq_show.c, dlq_retry.c). A usage
 * error is found before any connection is made.
 */
#include "cli/dlq.h"
#include "cli/dlq_internal.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- arguments ---- */

static int parse_id(const char *s, int64_t *ret, PjError *err)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || v <= 0)
        return pj_error_set(err, PJ_EINVAL,
                            "invalid dead-letter ID \"%s\": expected a positive integer", s);
    *ret = (int64_t)v;
    return 0;
}

static int parse_action(const char *s, DlqAction *ret, PjError *err)
{
    static const char *const names[] = {"list", "show", "retry", "discard"};
    static const DlqAction actions[] = {DLQ_LIST, DLQ_SHOW, DLQ_RETRY, DLQ_DISCARD};
    static_assert(ARRAY_SIZE(names) == ARRAY_SIZE(actions), "a name for every action");
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        if (strcmp(s, names[i]) == 0) {
            *ret = actions[i];
            return 0;
        }
    }
    return pj_error_set(err, PJ_EINVAL,
                        "unknown dlq command \"%s\": expected list, show, retry or discard", s);
}

/* One word after the subcommand; *i moves past an option's value. */
static int parse_word(int argc, const char *const *argv, int *i, DlqArgs *a, bool *has_id,
                      PjError *err)
{
    const char *s = argv[*i];
    if (strcmp(s, "--all") == 0) {
        a->all = true;
    } else if (strcmp(s, "--readmodel") == 0) {
        if (++*i >= argc)
            return pj_error_set(err, PJ_EINVAL, "option \"--readmodel\" needs a read-model name");
        a->readmodel = argv[*i];
    } else if (strncmp(s, "--readmodel=", 12) == 0) {
        a->readmodel = s + 12;
    } else if (s[0] == '-' && s[1] != '\0') {
        return pj_error_set(err, PJ_EINVAL, "unrecognized option \"%s\" for \"dlq\"", s);
    } else if (*has_id) {
        return pj_error_set(err, PJ_EINVAL, "unexpected argument \"%s\"", s);
    } else {
        *has_id = true;
        return parse_id(s, &a->id, err);
    }
    return 0;
}

/* Which words each subcommand takes. */
static int check_combination(const DlqArgs *a, bool has_id, PjError *err)
{
    if (a->action == DLQ_LIST && has_id)
        return pj_error_set(err, PJ_EINVAL, "\"dlq list\" takes no ID");
    if (a->all && a->action != DLQ_RETRY)
        return pj_error_set(err, PJ_EINVAL, "option \"--all\" is only valid with \"dlq retry\"");
    if (a->action == DLQ_RETRY && a->all && has_id)
        return pj_error_set(err, PJ_EINVAL, "\"dlq retry\" takes an ID or --all, not both");
    if (a->readmodel != NULL && a->action != DLQ_LIST && !a->all)
        return pj_error_set(err, PJ_EINVAL,
                            "option \"--readmodel\" is only valid with \"dlq list\" and "
                            "\"dlq retry --all\"");
    if (a->readmodel != NULL && a->readmodel[0] == '\0')
        return pj_error_set(err, PJ_EINVAL, "option \"--readmodel\" needs a read-model name");
    if (a->action != DLQ_LIST && !a->all && !has_id)
        return pj_error_set(err, PJ_EINVAL, "\"dlq %s\" needs a dead-letter ID%s",
                            a->action == DLQ_SHOW    ? "show"
                            : a->action == DLQ_RETRY ? "retry"
                                                     : "discard",
                            a->action == DLQ_RETRY ? " or --all" : "");
    return 0;
}

int dlq_parse_args(int argc, const char *const *argv, DlqArgs *ret, PjError *err)
{
    DlqArgs a = {0};
    bool has_id = false;
    if (argc < 1)
        return pj_error_set(err, PJ_EINVAL,
                            "\"dlq\" needs a command: list, show, retry or discard");
    int rc = parse_action(argv[0], &a.action, err);
    for (int i = 1; rc == 0 && i < argc; i++)
        rc = parse_word(argc, argv, &i, &a, &has_id, err);
    if (rc == 0)
        rc = check_combination(&a, has_id, err);
    if (rc == 0)
        *ret = a;
    return rc;
}

bool dlq_needs_models(const DlqArgs *args)
{
    return args->action == DLQ_RETRY;
}

/* ---- entry point ---- */

int dlq_run(const Config *cfg, const ModelSet *set, const DlqArgs *args, FILE *out, PjError *err)
{
    Pg *pg = NULL;
    int rc = pg_connect(cfg->pg_conninfo, &pg, err);
    if (rc < 0)
        return rc;
    switch (args->action) {
    case DLQ_LIST:
        rc = dlq_list(pg, cfg, args, out, err);
        break;
    case DLQ_SHOW:
        rc = dlq_show(pg, cfg, args, out, err);
        break;
    case DLQ_RETRY:
        rc = dlq_retry(pg, cfg, set, args, out, err);
        break;
    case DLQ_DISCARD:
        rc = dlq_discard(pg, cfg, args, out, err);
        break;
    }
    pg_free(pg);
    if (rc < 0 && strcmp(err->sqlstate, "42P01") == 0)
        return pj_error_suffix(err, "(run \"projector migrate\" to create schema \"%s\")",
                               cfg->pg_schema);
    return rc;
}
