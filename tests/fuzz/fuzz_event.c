/* fuzz_event.c - libFuzzer target: the input is one Redis stream entry, its fields split
 * at the byte 0x1F (name, value, name, value, ...; an odd last name gets an empty value).
 * Owns nothing but the harness: it decodes the entry as the reader does (event_decode with
 * "event" as the envelope field), checks that event_peek_type agrees with it, builds the
 * dead-letter form (event_raw_json), and binds
 * a decoded event against the plans of the shipped read models, so that every expression,
 * condition and null check they hold is evaluated on it.
 */
#include <stdlib.h>
#include <string.h>

#include "apply/event.h"
#include "fuzz.h"

#define FUZZ_EVENT_SEP 0x1F
#define FUZZ_EVENT_FIELDS_MAX 64 /* 32 name/value pairs */

typedef struct FuzzEntry {
    const char *parts[FUZZ_EVENT_FIELDS_MAX];
    size_t lens[FUZZ_EVENT_FIELDS_MAX];
    size_t nparts;
    /* names first, then values: the layout EntryFields wants */
    const char *strs[FUZZ_EVENT_FIELDS_MAX];
    size_t strlens[FUZZ_EVENT_FIELDS_MAX];
    EntryFields fields;
} FuzzEntry;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    (void)fuzz_shipped_models();
    return 0;
}

/* Splits data at the separator; returns false when there are too many parts. */
static bool split_parts(const uint8_t *data, size_t size, FuzzEntry *x)
{
    const char *p = (const char *)data, *end = p + size;

    x->nparts = 0;
    while (size > 0) {
        const char *sep = memchr(p, FUZZ_EVENT_SEP, (size_t)(end - p));
        const char *stop = sep != NULL ? sep : end;

        if (x->nparts == FUZZ_EVENT_FIELDS_MAX)
            return false;
        x->parts[x->nparts] = p;
        x->lens[x->nparts++] = (size_t)(stop - p);
        if (sep == NULL)
            break;
        p = sep + 1;
    }
    return true;
}

static void build_fields(FuzzEntry *x)
{
    static const char empty[1] = "";
    size_t n = (x->nparts + 1) / 2;

    for (size_t i = 0; i < n; i++) {
        bool has_value = 2 * i + 1 < x->nparts;

        x->strs[i] = x->parts[2 * i];
        x->strlens[i] = x->lens[2 * i];
        x->strs[n + i] = has_value ? x->parts[2 * i + 1] : empty;
        x->strlens[n + i] = has_value ? x->lens[2 * i + 1] : 0;
    }
    x->fields = (EntryFields){n, x->strs, x->strlens, x->strs + n, x->strlens + n};
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FuzzEntry x;
    const FuzzModels *m = fuzz_shipped_models();
    json_t *ev = NULL, *raw;
    PjError err = {0};
    char *stored;

    if (!split_parts(data, size, &x))
        return -1;
    build_fields(&x);
    raw = event_raw_json(&x.fields);
    if (raw == NULL || !json_is_object(raw))
        abort(); /* the dead-letter table must always be able to store the entry */
    stored = json_dumps(raw, JSON_COMPACT);
    if (stored == NULL)
        abort();
    free(stored);
    json_decref(raw);
    char peeked[64];
    int peek = event_peek_type(&x.fields, "event", peeked, sizeof peeked);
    if (event_decode("orders", "1768471800000-0", &x.fields, "event", &ev, &err) < 0)
        return 0;
    /* The type told without decoding is the one decoding gives. */
    const json_t *type = json_object_get(ev, "type");
    if (peek >= 0 && (!json_is_string(type) || strcmp(json_string_value(type), peeked) != 0))
        abort();
    fuzz_bind_all(m->set, m->plans, ev);
    json_decref(ev);
    return 0;
}
