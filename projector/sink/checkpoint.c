/* checkpoint.c - SQL for checkpoints and dead letters in the bookkeeping schema.
 *
 * Statement names are fixed ("pj_checkpoint", "pj_dead_letter"); the schema is baked into
 * their text when they are prepared, once per session.
 */
#include "sink/checkpoint.h"

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "sink/migrations.h"

#define CHECKPOINT_PARAMS 6   /* of checkpoint_sql */
#define DEAD_LETTER_PARAMS 10 /* of dead_letter_sql and dead_letters_sql */
#define INIT_PARAMS 6         /* of checkpoint_init's insert */

/* See migrations/003_advance_checkpoint.sql: fails unless the row is still at $3. */
static const char checkpoint_sql[] =
    "SELECT :\"schema\".advance_checkpoint($1, $2, $3, $4, $5, $6)";

static const char dead_letter_sql[] =
    "INSERT INTO :\"schema\".dead_letters AS d (readmodel, stream, entry_id, entry_ms, entry_seq, "
    "event_type, raw, error, sqlstate, attempts) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, "
    "$9, $10::integer) "
    "ON CONFLICT (readmodel, stream, entry_id) DO UPDATE SET attempts = d.attempts + "
    "EXCLUDED.attempts, "
    "error = EXCLUDED.error, sqlstate = EXCLUDED.sqlstate, raw = EXCLUDED.raw, "
    "last_failed_at = now()";

/* Many at once: each parameter the array of one column. */
static const char dead_letters_sql[] =
    "INSERT INTO :\"schema\".dead_letters AS d (readmodel, stream, entry_id, entry_ms, "
    "entry_seq, event_type, raw, error, sqlstate, attempts) "
    "SELECT v.readmodel, v.stream, v.entry_id, v.entry_ms, v.entry_seq, v.event_type, "
    "v.raw::jsonb, v.error, v.sqlstate, v.attempts "
    "FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], "
    "$7::text[], $8::text[], $9::text[], $10::integer[]) AS v(readmodel, stream, entry_id, "
    "entry_ms, entry_seq, event_type, raw, error, sqlstate, attempts) "
    "ON CONFLICT (readmodel, stream, entry_id) DO UPDATE SET attempts = d.attempts + "
    "EXCLUDED.attempts, "
    "error = EXCLUDED.error, sqlstate = EXCLUDED.sqlstate, raw = EXCLUDED.raw, "
    "last_failed_at = now()";

int checkpoint_prepare_sql(Pg *pg, const char *name, const char *sql, const char *schema,
                           int nparams, PjError *err)
{
    char *text = migrations_render(sql, schema);
    int rc = pg_prepare(pg, name, text, nparams, err);
    free(text);
    return rc;
}

int checkpoint_prepare(Pg *pg, const char *schema, PjError *err)
{
    int rc =
        checkpoint_prepare_sql(pg, "pj_checkpoint", checkpoint_sql, schema, CHECKPOINT_PARAMS, err);
    if (rc == 0)
        rc = checkpoint_prepare_sql(pg, "pj_dead_letter", dead_letter_sql, schema,
                                    DEAD_LETTER_PARAMS, err);
    if (rc == 0)
        rc = checkpoint_prepare_sql(pg, "pj_dead_letters", dead_letters_sql, schema,
                                    DEAD_LETTER_PARAMS, err);
    return rc;
}

/* The entries-read position as a parameter: v in decimal in buf, or NULL (not known) when
 * v is negative. */
static void fmt_position(int64_t v, char buf[24], const char **ret)
{
    snprintf(buf, 24, "%" PRId64, v);
    *ret = v >= 0 ? buf : NULL;
}

int checkpoint_query_model(Pg *pg, const char *schema, const char *sql_template, const Model *m,
                           PGresult **ret, PjError *err)
{
    char *sql = migrations_render(sql_template, schema);
    const char *params[] = {m->name};
    int rc = pg_query(pg, sql, 1, params, ret, err);
    free(sql);
    return rc;
}

int checkpoint_load(Pg *pg, const char *schema, const Model *m, StreamId *ret, int64_t *ret_read,
                    PjError *err)
{
    PGresult *res;
    int rc = checkpoint_query_model(
        pg, schema,
        "SELECT stream, last_id, entries_read FROM :\"schema\".checkpoints WHERE readmodel = $1", m,
        &res, err);
    if (rc < 0)
        return rc;
    for (size_t s = 0; s < m->nstreams; s++) {
        ret[s] = STREAM_ID_ZERO;
        if (ret_read != NULL)
            ret_read[s] = 0;
    }
    for (int row = 0; row < PQntuples(res); row++) {
        int s = model_find_stream(m, PQgetvalue(res, row, 0));
        StreamId id;
        if (s >= 0 && ret_read != NULL)
            ret_read[s] =
                PQgetisnull(res, row, 2) ? -1 : strtoll(PQgetvalue(res, row, 2), NULL, 10);
        if (s < 0)
            continue; /* a stream the model no longer reads */
        if (stream_id_parse(PQgetvalue(res, row, 1), &id) < 0) {
            rc = pj_error_set(err, PJ_EINVAL, "invalid checkpoint \"%s\" for read model \"%s\"",
                              PQgetvalue(res, row, 1), m->name);
            break;
        }
        ret[s] = id;
    }
    PQclear(res);
    return rc;
}

int checkpoint_init(Pg *pg, const char *schema, const char *readmodel, const char *stream,
                    StreamId id, int64_t entries_read, PjError *err)
{
    char idt[STREAM_ID_BUFSZ], ms[STREAM_ID_PART_BUFSZ], seq[STREAM_ID_PART_BUFSZ], pos[24];
    const char *pos_param;
    fmt_position(entries_read, pos, &pos_param);
    stream_id_format(id, idt);
    stream_id_format_parts(id, ms, seq);
    char *sql = migrations_render(
        "INSERT INTO :\"schema\".checkpoints (readmodel, stream, last_id, last_ms, last_seq, "
        "entries_read) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (readmodel, stream) DO NOTHING",
        schema);
    const char *params[] = {readmodel, stream, idt, ms, seq, pos_param};
    static_assert(ARRAY_SIZE(params) == INIT_PARAMS, "one parameter per placeholder");
    int rc = pg_query(pg, sql, INIT_PARAMS, params, NULL, err);
    free(sql);
    return rc;
}

int checkpoint_count_dead(Pg *pg, const char *schema, const Model *m, uint64_t *ret, PjError *err)
{
    PGresult *res;
    int rc = checkpoint_query_model(pg, schema,
                                    "SELECT stream, count(*) FROM :\"schema\".dead_letters "
                                    "WHERE readmodel = $1 GROUP BY stream",
                                    m, &res, err);
    if (rc < 0)
        return rc;
    for (size_t s = 0; s < m->nstreams; s++)
        ret[s] = 0;
    for (int row = 0; row < PQntuples(res); row++) {
        int s = model_find_stream(m, PQgetvalue(res, row, 0));
        if (s >= 0)
            ret[s] = strtoull(PQgetvalue(res, row, 1), NULL, 10);
    }
    PQclear(res);
    return 0;
}

void checkpoint_send(Pg *pg, const char *readmodel, const char *stream, StreamId expected,
                     StreamId id, uint64_t applied, int64_t entries_read, long tag)
{
    char was[STREAM_ID_BUFSZ], idt[STREAM_ID_BUFSZ], n[24], pos[24];
    const char *pos_param;

    /* A checkpoint only moves forward (the SQL function checks it against the row too). */
    assert(stream_id_cmp(id, expected) >= 0);
    fmt_position(entries_read, pos, &pos_param);
    stream_id_format(expected, was);
    stream_id_format(id, idt);
    snprintf(n, sizeof n, "%" PRIu64, applied);
    const char *params[] = {readmodel, stream, was, idt, n, pos_param};
    static_assert(ARRAY_SIZE(params) == CHECKPOINT_PARAMS, "one parameter per placeholder");
    pg_pipeline_send(pg, "pj_checkpoint", CHECKPOINT_PARAMS, params, tag);
}

/* The text of each column of dead letter d: params[k] points into d or into bufs. */
typedef struct DeadLetterText {
    char idt[STREAM_ID_BUFSZ], ms[STREAM_ID_PART_BUFSZ], seq[STREAM_ID_PART_BUFSZ];
    char attempts[16];
    const char *params[DEAD_LETTER_PARAMS];
} DeadLetterText;

static void dead_letter_text(const DeadLetter *d, DeadLetterText *t)
{
    stream_id_format(d->id, t->idt);
    stream_id_format_parts(d->id, t->ms, t->seq);
    const char *state = d->sqlstate != NULL && d->sqlstate[0] != '\0' ? d->sqlstate : NULL;
    snprintf(t->attempts, sizeof t->attempts, "%d", d->attempts > 0 ? d->attempts : 1);
    const char *params[] = {d->readmodel,  d->stream,   t->idt,   t->ms, t->seq,
                            d->event_type, d->raw_json, d->error, state, t->attempts};
    static_assert(ARRAY_SIZE(params) == DEAD_LETTER_PARAMS, "one parameter per placeholder");
    memcpy(t->params, params, sizeof params);
}

void checkpoint_send_dead_letter(Pg *pg, const DeadLetter *d, long tag)
{
    DeadLetterText t;
    dead_letter_text(d, &t);
    pg_pipeline_send(pg, "pj_dead_letter", DEAD_LETTER_PARAMS, t.params, tag);
}

void checkpoint_send_dead_letters(Pg *pg, const DeadLetter *d, size_t n, long tag)
{
    if (n <= 1) {
        if (n == 1)
            checkpoint_send_dead_letter(pg, d, tag);
        return;
    }
    StrBuf cols[DEAD_LETTER_PARAMS] = {{0}};
    for (size_t i = 0; i < n; i++) {
        DeadLetterText t;
        dead_letter_text(&d[i], &t);
        for (int k = 0; k < DEAD_LETTER_PARAMS; k++) {
            strbuf_append(&cols[k], i == 0 ? "{" : ",");
            strbuf_append_array_element(&cols[k], t.params[k]);
        }
    }
    const char *params[DEAD_LETTER_PARAMS];
    for (int k = 0; k < DEAD_LETTER_PARAMS; k++) {
        strbuf_append(&cols[k], "}");
        params[k] = cols[k].buf;
    }
    pg_pipeline_send(pg, "pj_dead_letters", DEAD_LETTER_PARAMS, params, tag);
    for (int k = 0; k < DEAD_LETTER_PARAMS; k++)
        strbuf_done(&cols[k]);
}
