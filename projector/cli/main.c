/* main.c - the command line: arguments, then one function per command (run hands over to
 * run/daemon.c, which owns the signal loop and the orderly shutdown). Only main() ends
 * the process.
 *
 * Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/clock.h"
#include "base/config.h"
#include "base/jsonarena.h"
#include "base/log.h"
#include "cli/dlq.h"
#include "cli/status.h"
#include "model/model.h"
#include "os/now.h"
#include "run/daemon.h"
#include "sink/migrations.h"
#include "sink/pg.h"
#include "sink/tables.h"

#define CLI_ARGS_MAX 256 /* arguments after the command word */

typedef struct Args {
    const char *config;
    bool config_given; /* --config was on the command line */
    bool level_given;  /* --log-level was: it wins over the config's */
    LogLevel level;
    const char *command;
    int argc; /* arguments after the command */
    char **argv;
} Args;

static const char usage_text[] =
    "usage: projector [--config FILE] COMMAND [ARGS]\n"
    "\n"
    "Keeps PostgreSQL read tables, declared in YAML, up to date from Redis Streams.\n"
    "\n"
    "commands:\n"
    "  run              run the daemon (until SIGTERM or SIGINT)\n"
    "  check [PATH...]  validate the configuration and read models (files or folders;\n"
    "                   default: the configured read-model folder); no servers needed\n"
    "  migrate          create or upgrade the bookkeeping schema\n"
    "  ddl              print the SQL that creates the read tables\n"
    "  status [--json]  print the state and lag of every read model\n"
    "  dlq list [--readmodel R]\n"
    "                   list dead letters, oldest first\n"
    "  dlq show ID      one dead letter: its raw entry, decoded event and full error\n"
    "  dlq retry ID | --all [--readmodel R]\n"
    "                   apply dead letters again through the current read models\n"
    "  dlq discard ID   delete a dead letter\n"
    "\n"
    "options:\n"
    "  -c, --config FILE  configuration file (default: projector.yaml)\n"
    "  --log-level LEVEL  error, warn, info or debug: over the config's log_level\n"
    "  -h, --help         show this help (after a command: that command's)\n"
    "  -V, --version      show the version\n"
    "\n"
    "Exit status: 0 success, 1 runtime failure, 2 usage or configuration error.\n"
    "See projector(1) and README.md.\n";

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "projector: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry \"projector --help\".\n");
    return PJ_EXIT_USAGE;
}

/* The help of one command: "projector COMMAND --help". */
typedef struct CommandHelp {
    const char *name;
    const char *text;
} CommandHelp;

static const CommandHelp command_help[] = {
    {"run", "usage: projector [--config FILE] run\n"
            "\n"
            "Runs the daemon: migrates the bookkeeping schema, creates or extends the read\n"
            "tables, then applies every read model's streams until SIGTERM or SIGINT (the\n"
            "batches in flight are committed first). SIGHUP reloads the read models. Serves\n"
            "/healthz, /readyz, /lag, /wait and /metrics on http.listen. Under systemd it\n"
            "speaks the notify protocol (READY, RELOADING, STOPPING, STATUS, WATCHDOG).\n"},
    {"check", "usage: projector [--config FILE] check [PATH...]\n"
              "\n"
              "Validates the configuration and the read models without any server: YAML,\n"
              "unknown keys, types, columns, expressions, lookups. PATH is a folder or a list\n"
              "of files checked together; without one, the configured read-model folder.\n"
              "Exit 0 when everything is valid, 2 otherwise (each error with file:line:col).\n"},
    {"migrate", "usage: projector [--config FILE] migrate\n"
                "\n"
                "Creates or upgrades the bookkeeping schema (postgres.schema) and exits.\n"},
    {"ddl", "usage: projector [--config FILE] ddl\n"
            "\n"
            "Prints the SQL that creates the read tables and their indexes.\n"},
    {"status", "usage: projector [--config FILE] status [--json]\n"
               "\n"
               "Prints, per read model and stream, its state and the reason for it (from the\n"
               "running daemon's /lag), the last entry in Redis, the last applied, the entries\n"
               "behind, the lag and the dead letters, read from PostgreSQL and Redis (the\n"
               "daemon need not run). Says which server cannot be reached; exit 1 then.\n"
               "--json prints one JSON document instead of the table.\n"},
    {"dlq", "usage: projector [--config FILE] dlq list [--readmodel R]\n"
            "       projector [--config FILE] dlq show ID\n"
            "       projector [--config FILE] dlq retry ID | --all [--readmodel R]\n"
            "       projector [--config FILE] dlq discard ID\n"
            "\n"
            "The dead letters: events a read model could not apply. list shows them oldest\n"
            "first; show one with its raw entry, decoded event and full error; retry applies\n"
            "them again through the current read models (removing each that applies);\n"
            "discard deletes one. Event content is printed with control characters written\n"
            "out.\n"},
};

static const CommandHelp *find_command_help(const char *name)
{
    for (size_t i = 0; name != NULL && i < ARRAY_SIZE(command_help); i++)
        if (strcmp(command_help[i].name, name) == 0)
            return &command_help[i];
    return NULL;
}

/* --help: the command's own help after a known command, else the general one. */
static int print_help(const char *command)
{
    const CommandHelp *h = find_command_help(command);
    fputs(h != NULL ? h->text : usage_text, stdout);
    return EXIT_SUCCESS;
}

/* Commands whose own options follow the command word (the others take none). */
static bool command_takes_options(const char *command)
{
    return command != NULL && (strcmp(command, "dlq") == 0 || strcmp(command, "status") == 0);
}

/* Returns -1 to continue, or an exit code. Options may come before or after the command;
 * after a command that takes options, the ones not listed here are the command's. */
static int parse_args(int argc, char **argv, Args *a)
{
    static char *rest[CLI_ARGS_MAX];
    a->config = "projector.yaml";
    a->argv = rest;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            return print_help(a->command);
        } else if (strcmp(s, "-V") == 0 || strcmp(s, "--version") == 0) {
            printf("projector %s\n", PROJECTOR_VERSION);
            return EXIT_SUCCESS;
        } else if (strcmp(s, "-c") == 0 || strcmp(s, "--config") == 0) {
            if (++i >= argc)
                return usage_error("option \"%s\" needs a file name", s);
            a->config = argv[i];
            a->config_given = true;
        } else if (strncmp(s, "--config=", 9) == 0) {
            a->config = s + 9;
            a->config_given = true;
        } else if (strcmp(s, "--log-level") == 0 || strncmp(s, "--log-level=", 12) == 0) {
            const char *v = s[11] == '=' ? s + 12 : (++i < argc ? argv[i] : NULL);
            if (v == NULL)
                return usage_error("option \"%s\" needs a level", s);
            if (log_level_parse(v, &a->level) < 0)
                return usage_error("invalid log level \"%s\": expected error, warn, info or debug",
                                   v);
            a->level_given = true;
        } else if (s[0] == '-' && s[1] != '\0' && !command_takes_options(a->command)) {
            return usage_error("unrecognized option \"%s\"", s);
        } else if (a->command == NULL) {
            a->command = s;
        } else if (a->argc < (int)ARRAY_SIZE(rest)) {
            a->argv[a->argc++] = argv[i];
        } else {
            return usage_error("too many arguments%s", "");
        }
    }
    if (a->command == NULL)
        return usage_error("no command given%s", "");
    return -1;
}

static int load_config(const Args *a, bool missing_ok, Config **ret)
{
    Diagnostics diag = {0};
    int rc = config_load(a->config, missing_ok, pg_conninfo_parses, ret, &diag);
    diag_print(&diag, stderr);
    diag_done(&diag);
    if (rc == 0) {
        log_set_level(a->level_given ? a->level : (*ret)->log_level);
        log_set_format((*ret)->log_format);
    }
    if (rc == 0 && (*ret)->secret_warning != NULL)
        log_warn(NULL, "%s", (*ret)->secret_warning);
    return rc;
}

static int load_models(const char *dir, ModelSet **ret)
{
    Diagnostics diag = {0};
    int rc = model_load_dir(dir, ret, &diag);
    diag_print(&diag, stderr);
    if (rc < 0 && diag.count > 0)
        fprintf(stderr, "projector: %zu error%s in read models\n", diag.count,
                diag.count == 1 ? "" : "s");
    diag_done(&diag);
    return rc;
}

/* Loads the configuration and, when need_models, the read models. On failure prints the
 * errors, frees what was loaded and returns -1. */
static int load_both(const Args *a, bool missing_ok, bool need_models, Config **cfg, ModelSet **set)
{
    *cfg = NULL;
    *set = NULL;
    if (load_config(a, missing_ok, cfg) < 0)
        return -1;
    if (need_models && load_models((*cfg)->readmodels_dir, set) < 0) {
        *cfg = config_free(*cfg);
        return -1;
    }
    return 0;
}

/* Frees what load_both loaded and passes code through. */
static int done_with(Config *cfg, ModelSet *set, int code)
{
    model_set_free(set);
    config_free(cfg);
    return code;
}

/* ---- check ---- */

static bool is_directory(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* One folder, or a list of files checked together (cross-file rules included). */
static int check_paths(int argc, char **argv, ModelSet **ret, Diagnostics *diag)
{
    if (argc == 1 && is_directory(argv[0]))
        return model_load_dir(argv[0], ret, diag);
    return model_load_files((const char *const *)argv, (size_t)argc, ret, diag);
}

static int cmd_check(const Args *a)
{
    Config *cfg = NULL;
    ModelSet *set = NULL;
    Diagnostics diag = {0};
    /* Paths alone check just those files; the config is checked when it is needed (no
     * paths) or named. */
    if ((a->argc == 0 || a->config_given) && (load_config(a, false, &cfg) < 0 || cfg == NULL))
        return PJ_EXIT_USAGE;
    int rc = a->argc > 0 || cfg == NULL ? check_paths(a->argc, a->argv, &set, &diag)
                                        : model_load_dir(cfg->readmodels_dir, &set, &diag);
    diag_print(&diag, stderr);
    if (rc < 0)
        fprintf(stderr, "projector: %zu error%s\n", diag.count, diag.count == 1 ? "" : "s");
    else
        printf("%zu read model%s OK\n", set->count, set->count == 1 ? "" : "s");
    diag_done(&diag);
    model_set_free(set);
    config_free(cfg);
    return rc < 0 ? PJ_EXIT_USAGE : EXIT_SUCCESS;
}

/* ---- ddl, migrate, status ---- */

static int cmd_ddl(const Args *a)
{
    Config *cfg;
    ModelSet *set;
    if (load_both(a, true, true, &cfg, &set) < 0)
        return PJ_EXIT_USAGE;
    char *sql = tables_ddl_all(set);
    fputs(sql, stdout);
    free(sql);
    return done_with(cfg, set, EXIT_SUCCESS);
}

static int migrate_now(const Config *cfg, Pg *pg)
{
    PjError err;
    int applied = 0;
    if (migrations_apply(pg, cfg->pg_schema, &applied, &err) < 0) {
        log_error(NULL, "could not migrate schema \"%s\": %s", cfg->pg_schema, err.message);
        return -1;
    }
    log_info(NULL, "schema \"%s\" is up to date (%d migration%s applied now)", cfg->pg_schema,
             applied, applied == 1 ? "" : "s");
    return 0;
}

static int cmd_migrate(const Args *a)
{
    Config *cfg = NULL;
    Pg *pg = NULL;
    PjError err;
    if (load_config(a, false, &cfg) < 0)
        return PJ_EXIT_USAGE;
    int code = EXIT_SUCCESS;
    if (pg_connect(cfg->pg_conninfo, &pg, &err) < 0) {
        log_error(NULL, "%s", err.message);
        code = PJ_EXIT_RUNTIME;
    } else if (migrate_now(cfg, pg) < 0) {
        code = PJ_EXIT_RUNTIME;
    }
    pg_free(pg);
    config_free(cfg);
    return code;
}

static int cmd_status(const Args *a)
{
    Config *cfg;
    ModelSet *set;
    PjError err;
    bool json = a->argc == 1 && strcmp(a->argv[0], "--json") == 0;
    if (a->argc > 0 && !json)
        return usage_error(a->argv[0][0] == '-' ? "unrecognized option \"%s\""
                                                : "status takes no argument \"%s\"",
                           a->argv[0]);
    if (load_both(a, false, true, &cfg, &set) < 0)
        return PJ_EXIT_USAGE;
    if (status_print(cfg, set, json, stdout, &err) < 0) {
        fprintf(stderr, "projector: %s\n", err.message);
        return done_with(cfg, set, PJ_EXIT_RUNTIME);
    }
    return done_with(cfg, set, EXIT_SUCCESS);
}

/* ---- dlq ---- */

static int cmd_dlq(const Args *a)
{
    Config *cfg;
    ModelSet *set;
    DlqArgs da;
    PjError err;
    if (dlq_parse_args(a->argc, (const char *const *)a->argv, &da, &err) < 0)
        return usage_error("%s", err.message);
    if (load_both(a, false, dlq_needs_models(&da), &cfg, &set) < 0)
        return PJ_EXIT_USAGE;
    if (dlq_run(cfg, set, &da, stdout, &err) < 0) {
        fflush(stdout);
        fprintf(stderr, "projector: %s\n", err.message);
        return done_with(cfg, set, PJ_EXIT_RUNTIME);
    }
    return done_with(cfg, set, EXIT_SUCCESS);
}

/* ---- run ---- */

static int cmd_run(const Args *a)
{
    Config *cfg;
    ModelSet *set;
    if (load_both(a, false, true, &cfg, &set) < 0)
        return PJ_EXIT_USAGE;
    DaemonReload again = {.config_path = a->config, .level_fixed = a->level_given};
    int code = daemon_run(cfg, set, &again); /* takes set */
    return done_with(cfg, NULL, code);
}

int main(int argc, char **argv)
{
    Args a = {0};
    jsonarena_install();        /* before any JSON exists */
    clock_install(now_wall_ms); /* the time the log and now() see */
    int code = parse_args(argc, argv, &a);
    if (code >= 0)
        return code;
    if (strcmp(a.command, "run") == 0)
        return cmd_run(&a);
    if (strcmp(a.command, "check") == 0)
        return cmd_check(&a);
    if (strcmp(a.command, "migrate") == 0)
        return cmd_migrate(&a);
    if (strcmp(a.command, "ddl") == 0)
        return cmd_ddl(&a);
    if (strcmp(a.command, "status") == 0)
        return cmd_status(&a);
    if (strcmp(a.command, "dlq") == 0)
        return cmd_dlq(&a);
    return usage_error("unknown command \"%s\"", a.command);
}
