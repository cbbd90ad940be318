/* load.c - readmodels/ YAML files -> ModelSet: files, top-level keys, name, table,
 * streams, then the checks across files (duplicate names and tables, lookup cycles), in the
 * order the loader runs them. Columns live in columns.c, the `on:` section in actions.c,
 * the helpers all three use in loader.c.
 *
 * Every problem becomes one "file:line:column: message" diagnostic and loading carries on,
 * so one run reports every error of every file; a ModelSet is returned only when none.
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/loader.h"

/* ---------------------------------------------------------------- name, table, streams */

static void parse_name(ModelFile *f, const YamlNode *n, ModelMeta *meta)
{
    const char *text = model_scalar(f, n, "readmodel", "a read-model name");
    if (text == NULL)
        return;
    if (!sql_ident_is_safe(text)) {
        model_error(f, n, "invalid read-model name \"%s\": " MODEL_IDENT_RULE, text);
        return;
    }
    f->m->name = xstrdup(text);
    meta->name_line = yamlsrc_line(n);
    meta->name_column = yamlsrc_column(n);
}

static void parse_table(ModelFile *f, const YamlNode *n, ModelMeta *meta)
{
    const char *text = model_scalar(f, n, "table", "a table name");
    if (text == NULL)
        return;
    const char *dot = strchr(text, '.');
    char *schema = dot != NULL ? xstrndup(text, (size_t)(dot - text)) : NULL;
    char *name = xstrdup(dot != NULL ? dot + 1 : text);
    if ((schema != NULL && !sql_ident_is_safe(schema)) || !sql_ident_is_safe(name)) {
        model_error(f, n,
                    "invalid table name \"%s\": expected \"name\" or \"schema.name\", each "
                    "part matching [a-z_][a-z0-9_]* and at most 63 bytes",
                    text);
        free(schema);
        free(name);
        return;
    }
    f->m->table = xstrdup(text);
    f->m->table_schema = schema;
    f->m->table_name = name;
    meta->table_line = yamlsrc_line(n);
    meta->table_column = yamlsrc_column(n);
}

/* A Redis key as a stream name: non-empty, no blanks or control characters. */
static bool stream_name_is_valid(const char *s)
{
    if (s[0] == '\0')
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
        if (*p <= ' ' || *p == 0x7f)
            return false;
    return true;
}

static void add_stream(ModelFile *f, const YamlNode *n)
{
    Model *m = f->m;
    const char *text = model_scalar(f, n, "streams", "a stream name");
    if (text == NULL)
        return;
    if (!stream_name_is_valid(text)) {
        model_error(f, n,
                    "invalid stream name \"%s\": expected a non-empty Redis key without "
                    "whitespace or control characters",
                    text);
        return;
    }
    if (model_find_stream(m, text) >= 0) {
        model_error(f, n, "duplicate stream \"%s\"", text);
        return;
    }
    m->streams = xrealloc(m->streams, (m->nstreams + 1) * sizeof *m->streams);
    m->streams[m->nstreams++] = xstrdup(text);
}

static void parse_streams(ModelFile *f, const YamlNode *n)
{
    if (yamlsrc_is_scalar(n) && !yamlsrc_scalar_is_null(n)) {
        add_stream(f, n);
    } else if (!yamlsrc_is_sequence(n)) {
        model_error(f, n,
                    "invalid value for \"streams\": expected a sequence of stream names or "
                    "one name, found %s",
                    model_found_name(n));
    } else if (yamlsrc_seq_count(n) == 0) {
        model_error(f, n, "\"streams\" is empty: expected at least one stream name");
    } else {
        for (size_t i = 0; i < yamlsrc_seq_count(n); i++)
            add_stream(f, yamlsrc_seq_item(f->src, n, i));
    }
}

static void parse_start(ModelFile *f, const YamlNode *n)
{
    const char *text = model_scalar(f, n, "start", "beginning or end");
    if (text == NULL)
        return;
    if (strcmp(text, "beginning") == 0)
        f->m->start = MODEL_START_BEGINNING;
    else if (strcmp(text, "end") == 0)
        f->m->start = MODEL_START_END;
    else
        model_error(f, n, "invalid value \"%s\" for \"start\": expected beginning or end", text);
}

static void parse_on_error(ModelFile *f, const YamlNode *n)
{
    const char *text = model_scalar(f, n, "on_error", "dead_letter or stop");
    if (text == NULL)
        return;
    if (strcmp(text, "dead_letter") == 0)
        f->m->on_error = MODEL_ON_ERROR_DEAD_LETTER;
    else if (strcmp(text, "stop") == 0)
        f->m->on_error = MODEL_ON_ERROR_STOP;
    else
        model_error(f, n, "invalid value \"%s\" for \"on_error\": expected dead_letter or stop",
                    text);
}

/* ---------------------------------------------------------------- one file */

static const char *const top_keys[] = {"readmodel", "table",    "streams",    "start",
                                       "key",       "version",  "columns",    "indexes",
                                       "on",        "on_error", "description"};
static const char *const required_keys[] = {"readmodel", "table",   "streams",
                                            "key",       "columns", "on"};

/* Top-level keys are handled in dependency order (columns before everything that names
 * a column), whatever order the file uses. */
static void load_root(ModelFile *f, const YamlNode *root, ModelMeta *meta)
{
    const YamlSrc *src = f->src;
    const YamlNode *n;
    model_check_keys(f, root, top_keys, ARRAY_SIZE(top_keys));
    for (size_t i = 0; i < ARRAY_SIZE(required_keys); i++)
        if (model_key_missing(f, root, required_keys[i], top_keys, ARRAY_SIZE(top_keys)))
            model_error(f, root, "missing required key \"%s\"", required_keys[i]);
    if ((n = yamlsrc_map_get(src, root, "readmodel")) != NULL)
        parse_name(f, n, meta);
    if ((n = yamlsrc_map_get(src, root, "table")) != NULL)
        parse_table(f, n, meta);
    if ((n = yamlsrc_map_get(src, root, "streams")) != NULL)
        parse_streams(f, n);
    if ((n = yamlsrc_map_get(src, root, "start")) != NULL)
        parse_start(f, n);
    if ((n = yamlsrc_map_get(src, root, "on_error")) != NULL)
        parse_on_error(f, n);
    if ((n = yamlsrc_map_get(src, root, "columns")) != NULL)
        model_parse_columns(f, n);
    if ((n = yamlsrc_map_get(src, root, "key")) != NULL)
        model_parse_key(f, n);
    if ((n = yamlsrc_map_get(src, root, "version")) != NULL)
        model_parse_version(f, n);
    if ((n = yamlsrc_map_get(src, root, "indexes")) != NULL)
        model_parse_indexes(f, n);
    if ((n = yamlsrc_map_get(src, root, "on")) != NULL)
        model_parse_handlers(f, n);
    if ((n = yamlsrc_map_get(src, root, "description")) != NULL && !yamlsrc_is_scalar(n))
        model_error(f, n, "invalid value for \"description\": expected text, found %s",
                    model_found_name(n));
}

static size_t load_append(ModelLoad *l, Model *m, YamlSrc *src, char *text, size_t len)
{
    xgrow((void **)&l->models, &l->cap, l->nmodels + 1, sizeof *l->models);
    l->meta = xrealloc(l->meta, l->cap * sizeof *l->meta);
    l->models[l->nmodels] = *m;
    l->meta[l->nmodels] = (ModelMeta){.src = src, .text = text, .len = len};
    return l->nmodels++;
}

/* Reads one file into a new (possibly partial) model at the end of l->models. */
static int load_file(ModelLoad *l, const char *path)
{
    char *text;
    size_t len;
    PjError err;
    YamlSrc *src;
    if (read_file(path, &text, &len, &err) < 0) {
        diag_add(l->diag, path, 0, 0, "%s", err.message);
        return -PJ_EIO;
    }
    int r = yamlsrc_load_string(path, text, len, &src, l->diag);
    if (r < 0) {
        free(text);
        return r;
    }
    Model m = {.file = xstrdup(path), .version_column = -1};
    snprintf(m.fingerprint, sizeof m.fingerprint, "%016" PRIx64, fnv1a64(text, len, 0));
    size_t idx = load_append(l, &m, src, text, len);
    ModelFile f = model_file_of(l, idx);
    const YamlNode *root = yamlsrc_root(src);
    if (root == NULL)
        model_error_at(&f, 1, 1,
                       "empty read-model file: expected a mapping with readmodel, "
                       "table, streams, key, columns and on");
    else if (!yamlsrc_is_mapping(root))
        model_error(&f, root, "invalid read-model file: expected a mapping, found %s",
                    model_found_name(root));
    else
        load_root(&f, root, &l->meta[idx]);
    return 0;
}

/* ---------------------------------------------------------------- across files */

static void check_duplicates(ModelLoad *l)
{
    for (size_t i = 0; i < l->nmodels; i++) {
        const Model *m = &l->models[i];
        ModelFile f = model_file_of(l, i);
        for (size_t j = 0; j < i && m->name != NULL; j++) {
            if (l->models[j].name == NULL || strcmp(l->models[j].name, m->name) != 0)
                continue;
            model_error_at(&f, l->meta[i].name_line, l->meta[i].name_column,
                           "duplicate read-model name \"%s\": first declared at %s:%d", m->name,
                           l->models[j].file, l->meta[j].name_line);
            break;
        }
        for (size_t j = 0; j < i && m->table != NULL; j++) {
            if (l->models[j].table == NULL || strcmp(l->models[j].table, m->table) != 0)
                continue;
            model_error_at(&f, l->meta[i].table_line, l->meta[i].table_column,
                           "duplicate table \"%s\": already used by read model \"%s\" at %s:%d",
                           m->table, l->models[j].name != NULL ? l->models[j].name : "?",
                           l->models[j].file, l->meta[j].table_line);
            break;
        }
    }
}

/* The first resolved lookup of model `from` that reads model `to`. */
static const ModelPendingLookup *pending_edge(const ModelLoad *l, size_t from, size_t to)
{
    for (size_t i = 0; i < l->npending; i++) {
        const ModelPendingLookup *p = &l->pending[i];
        if (p->resolved && p->owner == from && p->lookup->model == to)
            return p;
    }
    return NULL;
}

/* Reports the cycle through model start, found by a breadth-first search that stays
 * inside start's strongly connected component (reach[j][start]). */
static void report_cycle(ModelLoad *l, const bool *reach, size_t start)
{
    size_t n = l->nmodels, *prev = xmalloc(n * sizeof *prev), *queue = xmalloc(n * sizeof *queue);
    size_t head = 0, tail = 0, last = start;
    for (size_t i = 0; i < n; i++)
        prev[i] = SIZE_MAX;
    queue[tail++] = start;
    while (head < tail && last == start) {
        size_t u = queue[head++];
        const Model *m = &l->models[u];
        for (size_t k = 0; k < m->nlookup_models; k++) {
            size_t v = m->lookup_models[k];
            if (v == start) {
                last = u;
                break;
            }
            if (prev[v] == SIZE_MAX && reach[v * n + start]) {
                prev[v] = u;
                queue[tail++] = v;
            }
        }
    }
    /* The path start -> ... -> last -> start, written backwards from last. */
    size_t len = 0;
    for (size_t v = last; v != start; v = prev[v])
        queue[len++] = v;
    StrBuf sb = {0};
    strbuf_appendf(&sb, "\"%s\"", l->models[start].name);
    for (size_t i = len; i > 0; i--)
        strbuf_appendf(&sb, " -> \"%s\"", l->models[queue[i - 1]].name);
    strbuf_appendf(&sb, " -> \"%s\"", l->models[start].name);
    const ModelPendingLookup *p = pending_edge(l, start, len > 0 ? queue[len - 1] : start);
    ModelFile f = model_file_of(l, start);
    model_error(&f, p->ref,
                "lookups form a cycle: %s: a read model cannot wait for one that "
                "waits for it",
                sb.buf);
    strbuf_done(&sb);
    free(prev);
    free(queue);
}

/* Lookups make a read model wait for the models it reads; a cycle would wait forever. */
static void check_lookup_cycles(ModelLoad *l)
{
    size_t n = l->nmodels;
    bool *reach = xcalloc(n * n, sizeof *reach);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < l->models[i].nlookup_models; k++)
            reach[i * n + l->models[i].lookup_models[k]] = true;
    for (size_t k = 0; k < n; k++)
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n && reach[i * n + k]; j++)
                reach[i * n + j] = reach[i * n + j] || reach[k * n + j];
    for (size_t i = 0; i < n; i++) {
        bool lowest = reach[i * n + i];
        for (size_t j = 0; j < i && lowest; j++)
            if (reach[i * n + j] && reach[j * n + i])
                lowest = false;
        if (lowest)
            report_cycle(l, reach, i);
    }
    free(reach);
}

/* ---------------------------------------------------------------- diagnostics order */

typedef struct DiagSort {
    size_t rank, seq;
    Diagnostic d;
} DiagSort;

static int diag_sort_cmp(const void *a, const void *b)
{
    const DiagSort *x = a, *y = b;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    if (x->d.line != y->d.line)
        return x->d.line < y->d.line ? -1 : 1;
    if (x->d.column != y->d.column)
        return x->d.column < y->d.column ? -1 : 1;
    return x->seq < y->seq ? -1 : (x->seq > y->seq);
}

/* Orders the diagnostics added since `from` by file (in load order), line and column, so
 * that they read like a compiler's whatever order the checks ran in. */
static void diag_sort(Diagnostics *d, size_t from, const char *const *paths, size_t npaths)
{
    size_t n = d->count - from;
    DiagSort *v = xmalloc((n + 1) * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        const Diagnostic *g = &d->items[from + i];
        size_t rank = npaths;
        for (size_t k = 0; k < npaths && g->file != NULL; k++)
            if (strcmp(g->file, paths[k]) == 0) {
                rank = k;
                break;
            }
        v[i] = (DiagSort){.rank = rank, .seq = i, .d = *g};
    }
    qsort(v, n, sizeof *v, diag_sort_cmp);
    for (size_t i = 0; i < n; i++)
        d->items[from + i] = v[i].d;
    free(v);
}

/* ---------------------------------------------------------------- public API */

static void load_done(ModelLoad *l, bool keep_models)
{
    for (size_t i = 0; i < l->nmodels; i++) {
        if (!keep_models)
            model_done(&l->models[i]);
        yamlsrc_free(l->meta[i].src);
        free(l->meta[i].text);
    }
    for (size_t i = 0; i < l->nstrings; i++)
        free(l->strings[i]);
    free(l->strings);
    if (!keep_models)
        free(l->models);
    free(l->meta);
    free(l->pending);
}

/* What every model that leaves the loader holds: a load without diagnostics is complete. */
static void assert_complete(const Model *m)
{
    assert(m->name != NULL && m->table_name != NULL && m->file != NULL);
    assert(m->nstreams >= 1 && m->nkey >= 1 && m->ncolumns >= m->nkey);
    for (size_t k = 0; k < m->nkey; k++)
        assert(m->key[k] < m->ncolumns && m->columns[m->key[k]].sql_type != NULL);
    (void)m; /* NDEBUG */
}

int model_load_files(const char *const *paths, size_t npaths, ModelSet **ret, Diagnostics *diag)
{
    assert(ret != NULL && diag != NULL && (npaths == 0 || paths != NULL));
    ModelLoad l = {.diag = diag};
    size_t first_diag = diag->count;
    bool io_failed = false;

    if (npaths == 0) {
        diag_add(diag, NULL, 0, 0, "no read-model files to load");
        return -PJ_EINVAL;
    }
    for (size_t i = 0; i < npaths; i++)
        if (load_file(&l, paths[i]) == -PJ_EIO)
            io_failed = true;
    check_duplicates(&l);
    model_resolve_lookups(&l);
    check_lookup_cycles(&l);
    diag_sort(diag, first_diag, paths, npaths);
    if (diag->count > first_diag) {
        load_done(&l, false);
        return io_failed ? -PJ_EIO : -PJ_EINVAL;
    }
    ModelSet *set = xcalloc(1, sizeof *set);
    set->models = l.models;
    set->count = l.nmodels;
    for (size_t i = 0; i < set->count; i++)
        assert_complete(&set->models[i]);
    load_done(&l, true);
    *ret = set;
    return 0;
}

static bool has_yaml_suffix(const char *name)
{
    size_t n = strlen(name);
    return (n > 5 && strcmp(name + n - 5, ".yaml") == 0) ||
           (n > 4 && strcmp(name + n - 4, ".yml") == 0);
}

static int cmp_strings(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The regular *.yaml and *.yml files of dir, sorted by name. */
static int list_yaml_files(const char *dir, char ***ret, size_t *ret_n, Diagnostics *diag)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        diag_add(diag, dir, 0, 0, "could not open folder \"%s\": %s", dir, strerror(errno));
        return -PJ_EIO;
    }
    char **paths = NULL;
    size_t n = 0, cap = 0;
    bool slash = dir[0] != '\0' && dir[strlen(dir) - 1] == '/';
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        struct stat st;
        if (e->d_name[0] == '.' || !has_yaml_suffix(e->d_name))
            continue;
        char *path = xasprintf("%s%s%s", dir, slash ? "" : "/", e->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(path);
            continue;
        }
        xgrow((void **)&paths, &cap, n + 1, sizeof *paths);
        paths[n++] = path;
    }
    closedir(d);
    if (n > 0)
        qsort(paths, n, sizeof *paths, cmp_strings);
    *ret = paths;
    *ret_n = n;
    return 0;
}

int model_load_dir(const char *dir, ModelSet **ret, Diagnostics *diag)
{
    char **paths;
    size_t n;
    int r = list_yaml_files(dir, &paths, &n, diag);
    if (r < 0)
        return r;
    if (n == 0) {
        diag_add(diag, dir, 0, 0,
                 "no read-model files in folder \"%s\": expected *.yaml or *.yml files", dir);
        free(paths);
        return -PJ_EINVAL;
    }
    r = model_load_files((const char *const *)paths, n, ret, diag);
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
    return r;
}
