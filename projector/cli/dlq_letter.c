/* dlq_letter.c - one dead letter as the subcommands print and decode it: its one-line
 * description, the line for an empty result, and the normalized event of its stored raw
 * entry (decoded as the daemon decodes a stream entry, so a retry sees what it saw).
 */
#include "cli/dlq.h"
#include "cli/dlq_internal.h"

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "apply/event.h"
#include "sink/migrations.h"

const char *dlq_value_or(const PGresult *res, int row, int col, const char *dflt)
{
    return PQgetisnull(res, row, col) ? dflt : PQgetvalue(res, row, col);
}

void dlq_put_text(FILE *out, const char *s, bool keep_lines)
{
    StrBuf sb = {0};

    strbuf_append_visible(&sb, s, keep_lines);
    fputs(sb.buf != NULL ? sb.buf : "", out);
    strbuf_done(&sb);
}

void dlq_print_letter(FILE *out, const char *id, const char *readmodel, const char *stream,
                      const char *entry_id, const char *type)
{
    fprintf(out, "dead letter %s (read model \"%s\", entry ", id, readmodel);
    dlq_put_text(out, entry_id, false);
    fputs(" of stream \"", out);
    dlq_put_text(out, stream, false);
    if (type != NULL) {
        fputs("\", type \"", out);
        dlq_put_text(out, type, false);
    }
    fputs("\")", out);
}

void dlq_print_none(FILE *out, const char *readmodel)
{
    if (readmodel != NULL)
        fprintf(out, "no dead letters for read model \"%s\"\n", readmodel);
    else
        fputs("no dead letters\n", out);
}

/* The fields of a raw entry ({"name": "value", ...}) as event_decode takes them. Strings
 * are borrowed from the JSON object; other values (never written by the daemon) are
 * passed as compact JSON text. */
typedef struct RawFields {
    EntryFields fields;
    const char **names, **values;
    size_t *name_lens, *value_lens;
    char **owned; /* the compact JSON texts */
    size_t nowned;
} RawFields;

static void raw_fields_init(RawFields *rf, json_t *raw)
{
    size_t n = json_object_size(raw), i = 0;
    const char *key;
    json_t *value;
    *rf = (RawFields){0};
    rf->names = xcalloc(n + 1, sizeof *rf->names);
    rf->values = xcalloc(n + 1, sizeof *rf->values);
    rf->name_lens = xcalloc(n + 1, sizeof *rf->name_lens);
    rf->value_lens = xcalloc(n + 1, sizeof *rf->value_lens);
    rf->owned = xcalloc(n + 1, sizeof *rf->owned);
    json_object_foreach(raw, key, value)
    {
        rf->names[i] = key;
        rf->name_lens[i] = strlen(key);
        if (json_is_string(value)) {
            rf->values[i] = json_string_value(value);
            rf->value_lens[i] = json_string_length(value);
        } else {
            char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
            rf->owned[rf->nowned++] = text != NULL ? text : xstrdup("");
            rf->values[i] = rf->owned[rf->nowned - 1];
            rf->value_lens[i] = strlen(rf->values[i]);
        }
        i++;
    }
    rf->fields = (EntryFields){.count = i,
                               .names = rf->names,
                               .name_lens = rf->name_lens,
                               .values = rf->values,
                               .value_lens = rf->value_lens};
}

static void raw_fields_done(RawFields *rf)
{
    for (size_t i = 0; i < rf->nowned; i++)
        free(rf->owned[i]);
    free(rf->owned);
    free(rf->names);
    free(rf->values);
    free(rf->name_lens);
    free(rf->value_lens);
}

int dlq_decode_raw(const char *raw_text, const char *stream, const char *entry_id,
                   const char *event_field, json_t **ret, PjError *err)
{
    json_error_t jerr;
    json_t *raw = json_loads(raw_text, 0, &jerr);
    if (!json_is_object(raw)) {
        json_decref(raw);
        return pj_error_set(err, PJ_EPERMANENT, "the stored raw entry is not a JSON object");
    }
    RawFields rf;
    raw_fields_init(&rf, raw);
    /* An entry over max_event_bytes was kept cut: applying that copy would apply cut values. */
    int rc = entry_fields_cut(&rf.fields)
                 ? pj_error_set(err, PJ_EPERMANENT,
                                "the stored raw entry is a cut copy of an entry over "
                                "max_event_bytes: it cannot be applied; publish the event again")
                 : event_decode(stream, entry_id, &rf.fields, event_field, ret, err);
    raw_fields_done(&rf);
    json_decref(raw);
    return rc;
}

int dlq_query_letter(Pg *pg, const Config *cfg, const char *sql_template, int64_t id,
                     char idbuf[DLQ_ID_BUFSZ], PGresult **ret, PjError *err)
{
    const char *params[] = {idbuf};
    char *sql = migrations_render(sql_template, cfg->pg_schema);
    PGresult *res;

    assert(id > 0);
    snprintf(idbuf, DLQ_ID_BUFSZ, "%" PRId64, id);
    int rc = pg_query(pg, sql, 1, params, &res, err);
    free(sql);
    if (rc < 0)
        return rc;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return pj_error_set(err, PJ_ENOTFOUND, "dead letter %s does not exist", idbuf);
    }
    *ret = res;
    return 0;
}
