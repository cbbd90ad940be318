/* fuzz_model.c - libFuzzer target: the input is a folder of read-model YAML files, cut
 * into up to four files at every line "#file". Owns nothing but the harness: it writes the
 * files to its scratch folder, loads them with model_load_files (the cross-file checks
 * included) and, when they load, does what the daemon does with a loaded set: the DDL of
 * every model, its comparison with a table that matches it, one plan per model, and the
 * binding of a sample event of every handled type.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apply/ddl.h"
#include "fuzz.h"

#define FUZZ_MODEL_FILES_MAX 4
#define FUZZ_MODEL_MARK "\n#file\n"
#define FUZZ_MODEL_BYTES_MAX 65536

static char *fuzz_paths[FUZZ_MODEL_FILES_MAX];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = fuzz_scratch_dir();

    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    for (size_t i = 0; i < FUZZ_MODEL_FILES_MAX; i++)
        fuzz_paths[i] = xasprintf("%s/m%zu.yaml", dir, i);
    for (size_t i = 0; i < fuzz_sample_count(); i++)
        (void)fuzz_sample_event(i);
    return 0;
}

static void write_file(const char *path, const char *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    /* write() may take part of the data, or be interrupted by libFuzzer's timers */
    while (fd >= 0 && size > 0) {
        ssize_t n = write(fd, data, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        data += n;
        size -= (size_t)n;
    }
    if (fd < 0 || size > 0 || close(fd) != 0) {
        perror(path);
        abort();
    }
}

/* The first occurrence of the mark in [p, end), or NULL (memmem is not in POSIX). */
static const char *find_mark(const char *p, const char *end)
{
    size_t mark = strlen(FUZZ_MODEL_MARK);

    for (; (size_t)(end - p) >= mark; p++) {
        if (memcmp(p, FUZZ_MODEL_MARK, mark) == 0)
            return p;
    }
    return NULL;
}

/* Writes the parts of the input to m0.yaml, m1.yaml, ...; returns how many. */
static size_t write_files(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    size_t n = 0, mark = strlen(FUZZ_MODEL_MARK);

    while (n < FUZZ_MODEL_FILES_MAX - 1) {
        const char *cut = find_mark(p, end);
        if (cut == NULL)
            break;
        write_file(fuzz_paths[n++], p, (size_t)(cut - p) + 1);
        p = cut + mark;
    }
    write_file(fuzz_paths[n++], p, (size_t)(end - p));
    return n;
}

/* A live table exactly as the model declares it. */
static void live_table_of(const Model *m, LiveTable *t)
{
    *t = (LiveTable){.exists = true, .ncolumns = m->ncolumns, .nkey = m->nkey};
    t->columns = xcalloc(m->ncolumns, sizeof(*t->columns));
    for (size_t i = 0; i < m->ncolumns; i++) {
        t->columns[i].name = xstrdup(m->columns[i].name);
        t->columns[i].sql_type = xstrdup(m->columns[i].sql_type);
        t->columns[i].not_null = !m->columns[i].nullable;
    }
    t->key = xcalloc(m->nkey, sizeof(*t->key));
    for (size_t i = 0; i < m->nkey; i++)
        t->key[i] = xstrdup(m->columns[m->key[i]].name);
}

static void check_ddl(const Model *m)
{
    LiveTable live;
    StrBuf alter = {0};
    Diagnostics diag = {0};

    free(ddl_create_sql(m));
    live_table_of(m, &live);
    /* A table that matches its model needs no change and has no difference. */
    if (ddl_reconcile(m, &live, &alter, &diag) != 0 || alter.len != 0 || diag.count != 0)
        abort();
    strbuf_done(&alter);
    diag_done(&diag);
    live_table_done(&live);
}

/* Sample events retyped to every type the model handles. */
static void bind_handled(const ModelSet *set, ApplierPlan *const *plans, const Model *m)
{
    for (size_t h = 0; h < m->nhandlers; h++) {
        for (size_t i = 0; i < fuzz_sample_count(); i++) {
            json_t *ev = json_deep_copy(fuzz_sample_event(i));

            json_object_set_new(ev, "type", json_string(m->handlers[h].event_type));
            fuzz_bind_all(set, plans, ev);
            json_decref(ev);
        }
    }
}

static void use_set(const ModelSet *set)
{
    ApplierPlan **plans = xcalloc(set->count, sizeof(*plans));
    PjError err = {0};

    for (size_t i = 0; i < set->count; i++) {
        check_ddl(&set->models[i]);
        /* A loaded model is consistent: planning it cannot fail. */
        if (applier_plan_new(set, i, &plans[i], &err) != 0)
            abort();
    }
    for (size_t i = 0; i < set->count; i++)
        bind_handled(set, plans, &set->models[i]);
    for (size_t i = 0; i < set->count; i++)
        plans[i] = applier_plan_free(plans[i]);
    free(plans);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ModelSet *set = NULL;
    Diagnostics diag = {0};
    size_t n;

    if (size > FUZZ_MODEL_BYTES_MAX)
        return -1;
    n = write_files(data, size);
    if (model_load_files((const char *const *)fuzz_paths, n, &set, &diag) == 0) {
        if (diag.count != 0)
            abort(); /* a set that loaded has no diagnostics */
        use_set(set);
        set = model_set_free(set);
    }
    diag_done(&diag);
    return 0;
}
