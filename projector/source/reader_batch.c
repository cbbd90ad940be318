/* reader_batch.c - an XREADGROUP reply made into a Batch: its shape checked, each entry's
 * fields pointed at in the reply (or, for an entry the cut shortened, copied with the mark
 * of what it lost), the entries held past a read's budget set aside. Touches no socket.
 */
#include "source/reader.h"
#include "source/reader_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

void batch_reset(Batch *b)
{
    if (b->reply != NULL)
        freeReplyObject(b->reply);
    b->reply = NULL;
    b->count = 0;
    for (size_t i = 0; i < b->ncut; i++)
        free(b->cut[i]);
    b->ncut = 0;
    b->nheld = 0;
    b->bytes = 0;
}

void batch_done(Batch *b)
{
    batch_reset(b);
    free(b->entries);
    free(b->strs);
    free(b->lens);
    free(b->cut);
    free(b->held);
    *b = (Batch){0};
}

/* Counts the strings the batch needs, so the arrays are sized before pointers into
 * them are handed out. */
static size_t count_fields(const redisReply *reply)
{
    size_t n = 0;
    for (size_t s = 0; s < reply->elements; s++) {
        const redisReply *entries = reply->element[s]->element[1];
        for (size_t e = 0; e < entries->elements; e++) {
            const redisReply *fields = entries->element[e]->element[1];
            if (fields->type == REDIS_REPLY_ARRAY)
                n += fields->elements;
        }
    }
    return n;
}

bool reader_entry_shape_ok(const redisReply *e)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING)
        return false;
    const redisReply *f = e->element[1];
    if (f->type == REDIS_REPLY_NIL)
        return true;
    if (f->type != REDIS_REPLY_ARRAY || f->elements % 2 != 0)
        return false;
    for (size_t i = 0; i < f->elements; i++)
        if (f->element[i]->type != REDIS_REPLY_STRING)
            return false;
    return true;
}

bool reader_read_shape_ok(const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ARRAY)
        return false;
    for (size_t s = 0; s < reply->elements; s++) {
        const redisReply *sr = reply->element[s];
        if (sr->type != REDIS_REPLY_ARRAY || sr->elements != 2 ||
            sr->element[0]->type != REDIS_REPLY_STRING || sr->element[1]->type != REDIS_REPLY_ARRAY)
            return false;
        for (size_t e = 0; e < sr->element[1]->elements; e++)
            if (!reader_entry_shape_ok(sr->element[1]->element[e]))
                return false;
    }
    return true;
}

static int stream_index(const char *const *streams, size_t n, const redisReply *name)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(streams[i]) == name->len && memcmp(streams[i], name->str, name->len) == 0)
            return (int)i;
    return -1;
}

/* The first bytes of a name or value of an oversize entry, then ENTRY_CUT_MARK; owned by
 * the batch. whole is its length in Redis, *len what the reply holds of it. */
static const char *cut_copy(Batch *b, const char *str, size_t *len, size_t whole)
{
    size_t kept = *len < RESPCUT_KEEP_BYTES ? *len : RESPCUT_KEEP_BYTES;
    if (whole <= kept)
        return str;
    StrBuf sb = {0};
    strbuf_appendn(&sb, str, kept);
    strbuf_appendf(&sb, ENTRY_CUT_MARK, kept, whole);
    *len = sb.len;
    xgrow((void **)&b->cut, &b->cut_cap, b->ncut + 1, sizeof *b->cut);
    b->cut[b->ncut++] = sb.buf;
    return sb.buf;
}

/* The value at index k of the batch's strings, with ENTRY_CUT_FIELDS_MARK after it: the
 * fields of its entry after it were left out. */
static void mark_fields_cut(Batch *b, size_t k, size_t kept, size_t whole)
{
    StrBuf sb = {0};
    strbuf_appendn(&sb, b->strs[k], b->lens[k]);
    strbuf_appendf(&sb, ENTRY_CUT_FIELDS_MARK, kept, whole);
    b->lens[k] = sb.len;
    xgrow((void **)&b->cut, &b->cut_cap, b->ncut + 1, sizeof *b->cut);
    b->cut[b->ncut++] = sb.buf;
    b->strs[k] = sb.buf;
}

/* Fills the name or value at index k of the batch's strings from element el, as cut. */
static void put_string(Batch *b, size_t k, const redisReply *el, const CutEntry *ce,
                       const size_t *whole)
{
    b->lens[k] = el->len;
    b->strs[k] = el->str;
    if (ce != NULL && ce->oversize) {
        assert(whole != NULL);
        b->strs[k] = cut_copy(b, el->str, &b->lens[k], whole[0]);
    }
    b->bytes += b->lens[k];
}

/* Appends one entry; its field arrays live in b->strs/b->lens at *slot. ce is what the cut
 * recorded of it (NULL: nothing was cut), whole the lengths in Redis of its fields. */
static int add_entry(Batch *b, size_t stream, const redisReply *e, const CutEntry *ce,
                     const size_t *whole, size_t *slot)
{
    Entry entry = {.stream = stream};
    if (stream_id_parsen(e->element[0]->str, e->element[0]->len, &entry.id) < 0)
        return -PJ_EINVAL;
    stream_id_format(entry.id, entry.id_text);
    const redisReply *f = e->element[1];
    entry.deleted = f->type == REDIS_REPLY_NIL;
    entry.oversize = ce != NULL && ce->oversize;
    size_t n = entry.deleted ? 0 : f->elements / 2;
    /* names in [slot, slot+n), values in [slot+n, slot+2n) */
    for (size_t i = 0; i < n; i++) {
        put_string(b, *slot + i, f->element[2 * i], ce, whole != NULL ? whole + 2 * i : NULL);
        put_string(b, *slot + n + i, f->element[2 * i + 1], ce,
                   whole != NULL ? whole + 2 * i + 1 : NULL);
        entry.bytes += f->element[2 * i]->len + f->element[2 * i + 1]->len;
    }
    entry.whole_fields = n;
    if (ce != NULL) { /* sizes as Redis holds them, of the fields cut or left out too */
        entry.bytes = ce->bytes;
        entry.whole_fields = ce->nwhole / 2;
    }
    if (n > 0 && entry.whole_fields > n)
        mark_fields_cut(b, *slot + 2 * n - 1, n, entry.whole_fields);
    if (n > 0) /* no arrays for an entry without fields (none may be allocated) */
        entry.fields = (EntryFields){
            .count = n,
            .names = b->strs + *slot,
            .name_lens = b->lens + *slot,
            .values = b->strs + *slot + n,
            .value_lens = b->lens + *slot + n,
        };
    *slot += 2 * n;
    xgrow((void **)&b->entries, &b->cap, b->count + 1, sizeof *b->entries);
    b->entries[b->count++] = entry;
    return 0;
}

/* Notes an entry held past the read's budget: only its stream and ID. */
static int add_held(Batch *b, size_t stream, const redisReply *e)
{
    Entry entry = {.stream = stream};
    if (stream_id_parsen(e->element[0]->str, e->element[0]->len, &entry.id) < 0)
        return -PJ_EINVAL;
    stream_id_format(entry.id, entry.id_text);
    xgrow((void **)&b->held, &b->held_cap, b->nheld + 1, sizeof *b->held);
    b->held[b->nheld++] = entry;
    return 0;
}

/* Entry k of the reply as the cut recorded it, when the cut saw the same entries (with
 * the same number of names and values); NULL without a cut. */
static int cut_entry(const RespCut *cut, size_t k, const redisReply *e, const CutEntry **ret)
{
    *ret = NULL;
    if (cut == NULL)
        return 0;
    size_t n = e->element[1]->type == REDIS_REPLY_ARRAY ? e->element[1]->elements : 0;
    if (k >= cut->nentries || cut->entries[k].nfields != n)
        return -PJ_EINVAL;
    *ret = &cut->entries[k];
    return 0;
}

static int fill_stream(Batch *b, size_t idx, const redisReply *entries, const RespCut *cut,
                       size_t *k, size_t *slot)
{
    for (size_t e = 0; e < entries->elements; e++, (*k)++) {
        const redisReply *el = entries->element[e];
        const CutEntry *ce;
        int rc = cut_entry(cut, *k, el, &ce);
        if (rc == 0 && ce != NULL && ce->held)
            rc = add_held(b, idx, el);
        else if (rc == 0)
            rc =
                add_entry(b, idx, el, ce,
                          ce != NULL && ce->nfields > 0 ? cut->field_lens + ce->first : NULL, slot);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int reader_fill_batch(Batch *b, const char *const *streams, size_t nstreams, const RespCut *cut,
                      PjError *err)
{
    const redisReply *reply = b->reply;
    size_t need = count_fields(reply);
    if (need > b->strs_cap) {
        b->strs = xrealloc(b->strs, need * sizeof *b->strs);
        b->lens = xrealloc(b->lens, need * sizeof *b->lens);
        b->strs_cap = need;
    }
    size_t slot = 0, k = 0;
    for (size_t s = 0; s < reply->elements; s++) {
        const redisReply *sr = reply->element[s];
        int idx = stream_index(streams, nstreams, sr->element[0]);
        if (idx < 0)
            return pj_error_set(err, PJ_ETRANSIENT, "XREADGROUP returned an unknown stream");
        if (fill_stream(b, (size_t)idx, sr->element[1], cut, &k, &slot) < 0)
            return pj_error_set(err, PJ_ETRANSIENT, "XREADGROUP returned an invalid entry");
    }
    if (cut != NULL && k != cut->nentries)
        return pj_error_set(err, PJ_ETRANSIENT, "XREADGROUP returned an invalid entry");
    return 0;
}
