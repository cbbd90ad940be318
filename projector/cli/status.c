/* status.c - the `projector status` table: per read model and stream, the last entry in
 * Redis, the checkpoint, entries not yet applied, lag in seconds and dead letters.
 */
#include "cli/status.h"

#include <inttypes.h>
#include <stdlib.h>

#include "os/now.h"
#include "sink/checkpoint.h"
#include "sink/pg.h"
#include "source/reader.h"

static void print_row(FILE *out, const Model *m, size_t s, StreamId applied,
                      const StreamBacklog *ls, uint64_t dead)
{
    char last[STREAM_ID_BUFSZ] = "-", done[STREAM_ID_BUFSZ];
    if (ls->has_last_entry)
        stream_id_format(ls->last_entry, last);
    double lag_s = stream_backlog_lag_seconds(ls, now_wall_ms());
    fprintf(out, "%-20s %-16s %-24s %-24s %10" PRIu64 " %9.1f %6" PRIu64 "\n", m->name,
            m->streams[s], last, stream_id_format(applied, done), ls->entries_behind, lag_s, dead);
}

static int print_model(Reader *r, Pg *pg, const Config *cfg, const Model *m, FILE *out,
                       PjError *err)
{
    StreamId *applied = xcalloc(m->nstreams, sizeof *applied);
    uint64_t *dead = xcalloc(m->nstreams, sizeof *dead);
    char *group = reader_group_name(m->name);
    int rc = checkpoint_load(pg, cfg->pg_schema, m, applied, NULL, err);
    if (rc == 0)
        rc = checkpoint_count_dead(pg, cfg->pg_schema, m, dead, err);
    for (size_t s = 0; rc == 0 && s < m->nstreams; s++) {
        StreamBacklog ls = {.oldest_unapplied_ms = -1};
        rc = reader_sample(r, m->streams[s], group, applied[s], &ls, err);
        if (rc == 0)
            print_row(out, m, s, applied[s], &ls, dead[s]);
    }
    free(group);
    free(applied);
    free(dead);
    return rc;
}

int status_print(const Config *cfg, const ModelSet *set, FILE *out, PjError *err)
{
    Pg *pg = NULL;
    Reader *r = NULL;
    int rc = pg_connect(cfg->pg_conninfo, &pg, err);
    if (rc == 0)
        rc = reader_connect(&cfg->redis, cfg->connect_timeout_ms,
                            cfg->connect_timeout_ms + READER_REPLY_SLACK_MS, &r, err);
    if (rc == 0)
        fprintf(out, "%-20s %-16s %-24s %-24s %10s %9s %6s\n", "READMODEL", "STREAM", "LAST ENTRY",
                "APPLIED", "BEHIND", "LAG(s)", "DEAD");
    for (size_t i = 0; rc == 0 && i < set->count; i++)
        rc = print_model(r, pg, cfg, &set->models[i], out, err);
    reader_free(r);
    pg_free(pg);
    return rc;
}
