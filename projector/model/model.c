/* model.c - a loaded read model and its set: the queries the other layers ask of it
 * (handler of an event type, column, stream, model by name, the quoted table name) and
 * the freeing of everything a Model owns.
 *
 * A ModelSet only ever leaves the loader (load.c) complete and valid; nothing here checks
 * YAML or reports positions.
 */
#include "model/model.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

bool column_kind_is_numeric(ColumnKind kind)
{
    return kind == MODEL_COL_SMALLINT || kind == MODEL_COL_INTEGER || kind == MODEL_COL_BIGINT ||
           kind == MODEL_COL_NUMERIC || kind == MODEL_COL_REAL || kind == MODEL_COL_DOUBLE;
}

/* ---------------------------------------------------------------- freeing */

static void assigns_free(Assign *items, size_t n);

static void lookup_free(Lookup *lk)
{
    if (lk != NULL) {
        assigns_free(lk->where, lk->nwhere);
        free(lk);
    }
}

static void assigns_free(Assign *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        expr_free(items[i].expr);
        lookup_free(items[i].lookup);
    }
    free(items);
}

static void action_done(Action *a)
{
    cond_free(a->when);
    assigns_free(a->set, a->nset);
    assigns_free(a->add, a->nadd);
    assigns_free(a->where, a->nwhere);
}

static void handler_done(Handler *h)
{
    for (size_t i = 0; i < h->nactions; i++)
        action_done(&h->actions[i]);
    free(h->actions);
    free(h->event_type);
}

void model_done(Model *m)
{
    free(m->name);
    free(m->file);
    free(m->table);
    free(m->table_schema);
    free(m->table_name);
    for (size_t i = 0; i < m->nstreams; i++)
        free(m->streams[i]);
    free(m->streams);
    free(m->key);
    for (size_t i = 0; i < m->ncolumns; i++) {
        free(m->columns[i].name);
        free(m->columns[i].sql_type);
        free(m->columns[i].default_text);
    }
    free(m->columns);
    for (size_t i = 0; i < m->nindexes; i++)
        free(m->indexes[i].columns);
    free(m->indexes);
    for (size_t i = 0; i < m->nhandlers; i++)
        handler_done(&m->handlers[i]);
    free(m->handlers);
    free(m->lookup_models);
}

ModelSet *model_set_free(ModelSet *set)
{
    if (set != NULL) {
        for (size_t i = 0; i < set->count; i++)
            model_done(&set->models[i]);
        free(set->models);
        free(set);
    }
    return NULL;
}

const Handler *model_find_handler(const Model *m, const char *event_type)
{
    for (size_t i = 0; i < m->nhandlers; i++)
        if (strcmp(m->handlers[i].event_type, event_type) == 0)
            return &m->handlers[i];
    return NULL;
}

int model_find_column(const Model *m, const char *name)
{
    for (size_t i = 0; i < m->ncolumns; i++)
        if (strcmp(m->columns[i].name, name) == 0)
            return (int)i;
    return -1;
}

int model_find_stream(const Model *m, const char *stream)
{
    for (size_t i = 0; i < m->nstreams; i++)
        if (strcmp(m->streams[i], stream) == 0)
            return (int)i;
    return -1;
}

int model_set_find(const ModelSet *set, const char *name)
{
    for (size_t i = 0; i < set->count; i++)
        if (strcmp(set->models[i].name, name) == 0)
            return (int)i;
    return -1;
}

void model_append_table(StrBuf *sb, const Model *m)
{
    if (m->table_schema != NULL) {
        sql_append_ident(sb, m->table_schema);
        strbuf_append(sb, ".");
    }
    sql_append_ident(sb, m->table_name);
}
