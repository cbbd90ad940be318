/* partition.c - which partition an event's statements belong to, and the partition
 * checkpoints that make a parallel batch exactly-once (see partition.h).
 *
 * Owns the Recovery read back at session start. Invariant: while any partition row is
 * ahead of the checkpoint, batches run on one session only (run/parallel.c), so the rows ahead
 * all come from one batch, under one partitioning.
 */
#include "sink/partition.h"

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "sink/checkpoint.h"

#define PARTITION_CHECKPOINT_PARAMS 7 /* of partition_checkpoint_sql */

static const char partition_checkpoint_sql[] =
    "INSERT INTO :\"schema\".partition_checkpoints AS p (readmodel, stream, partition, "
    "partitions, last_id, last_ms, last_seq) VALUES ($1, $2, $3::integer, $4::integer, $5, "
    "$6::bigint, $7::bigint) ON CONFLICT (readmodel, stream, partition) DO UPDATE SET "
    "partitions = EXCLUDED.partitions, last_id = EXCLUDED.last_id, last_ms = EXCLUDED.last_ms, "
    "last_seq = EXCLUDED.last_seq, updated_at = now()";

int partition_of(const ApplierPlan *plan, const BoundStatement *stmts, size_t n, int nparts,
                 StrBuf *key)
{
    int part = 0;

    assert(nparts >= 1 && nparts <= PARTITION_MAX);
    for (size_t i = 0; i < n; i++) {
        if (!applier_row_key(plan, &stmts[i], key))
            return PARTITION_NONE;
        int p = (int)(fnv1a64(key->buf, key->len, 0) % (uint64_t)nparts);
        if (i > 0 && p != part)
            return PARTITION_NONE;
        part = p;
    }
    assert(part >= 0 && part < nparts);
    return part;
}

int partition_prepare(Pg *pg, const char *schema, PjError *err)
{
    return checkpoint_prepare_sql(pg, "pj_partition_checkpoint", partition_checkpoint_sql, schema,
                                  PARTITION_CHECKPOINT_PARAMS, err);
}

void partition_send_checkpoint(Pg *pg, const char *readmodel, const char *stream, int part,
                               int nparts, StreamId id)
{
    char idt[STREAM_ID_BUFSZ], ms[STREAM_ID_PART_BUFSZ], seq[STREAM_ID_PART_BUFSZ], p[16], np[16];

    assert(part >= 1 && part < nparts && nparts <= PARTITION_MAX);
    stream_id_format(id, idt);
    stream_id_format_parts(id, ms, seq);
    snprintf(p, sizeof p, "%d", part);
    snprintf(np, sizeof np, "%d", nparts);
    const char *params[] = {readmodel, stream, p, np, idt, ms, seq};
    static_assert(ARRAY_SIZE(params) == PARTITION_CHECKPOINT_PARAMS,
                  "one parameter per placeholder");
    pg_pipeline_send(pg, "pj_partition_checkpoint", PARTITION_CHECKPOINT_PARAMS, params, -1);
}

/* One row into r; -PJ_EINVAL when it contradicts the others. */
static int recovery_add(Recovery *r, const Model *m, PGresult *res, int row, PjError *err)
{
    int s = model_find_stream(m, PQgetvalue(res, row, 0));
    int part = atoi(PQgetvalue(res, row, 1));
    int nparts = atoi(PQgetvalue(res, row, 2));
    StreamId id;
    if (s < 0)
        return 0; /* a stream the model no longer reads */
    if (stream_id_parse(PQgetvalue(res, row, 3), &id) < 0 || nparts < 2 || nparts > PARTITION_MAX ||
        part < 1 || part >= nparts || (r->nparts != 0 && r->nparts != nparts))
        return pj_error_set(err, PJ_EINVAL,
                            "inconsistent partition checkpoint of read model \"%s\" on stream "
                            "\"%s\" (partition %s of %s at %s)",
                            m->name, m->streams[s], PQgetvalue(res, row, 1),
                            PQgetvalue(res, row, 2), PQgetvalue(res, row, 3));
    r->nparts = nparts;
    r->upto[(size_t)s * PARTITION_MAX + (size_t)part] = id;
    return 0;
}

int partition_load(Pg *pg, const char *schema, const Model *m, const StreamId *checkpoint,
                   Recovery *ret, PjError *err)
{
    partition_recovery_done(ret);
    ret->nstreams = m->nstreams;
    ret->upto = xcalloc(m->nstreams * PARTITION_MAX, sizeof *ret->upto);
    PGresult *res;
    int rc = checkpoint_query_model(pg, schema,
                                    "SELECT stream, partition, partitions, last_id FROM "
                                    ":\"schema\".partition_checkpoints WHERE readmodel = $1",
                                    m, &res, err);
    if (rc < 0)
        return rc;
    for (int row = 0; rc == 0 && row < PQntuples(res); row++) {
        int s = model_find_stream(m, PQgetvalue(res, row, 0));
        StreamId id;
        if (s >= 0 && stream_id_parse(PQgetvalue(res, row, 3), &id) == 0 &&
            stream_id_cmp(id, checkpoint[s]) <= 0)
            continue; /* its batch committed */
        rc = recovery_add(ret, m, res, row, err);
    }
    PQclear(res);
    return rc;
}

bool partition_applied(const Recovery *r, size_t stream, int part, StreamId id)
{
    if (r->nparts == 0 || part < 1 || part >= r->nparts || stream >= r->nstreams)
        return false;
    StreamId upto = r->upto[stream * PARTITION_MAX + (size_t)part];
    return !stream_id_is_zero(upto) && stream_id_cmp(id, upto) <= 0;
}

bool partition_recovery_pending(Recovery *r, const StreamId *checkpoint)
{
    if (r->nparts == 0)
        return false;
    for (size_t s = 0; s < r->nstreams; s++)
        for (int p = 1; p < r->nparts; p++)
            if (stream_id_cmp(r->upto[s * PARTITION_MAX + (size_t)p], checkpoint[s]) > 0)
                return true;
    r->nparts = 0;
    return false;
}

void partition_recovery_done(Recovery *r)
{
    free(r->upto);
    *r = (Recovery){0};
}
