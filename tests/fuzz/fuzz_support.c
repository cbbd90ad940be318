/* fuzz_support.c - the fixtures the fuzz targets share: sample events decoded by
 * event_decode (so they are exactly what the daemon evaluates), the shipped read models
 * and their plans, a scratch folder per process, and a quiet logger.
 * Everything is built once, on first use, and kept until exit.
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apply/event.h"
#include "base/log.h"

#ifndef PROJECTOR_SOURCE_DIR
#error "PROJECTOR_SOURCE_DIR must name the source tree (set by CMake)"
#endif

/* ---- sample events ---- */

static const char *const fuzz_envelopes[] = {
    /* deploy/sample/feed.jsonl, o-1001 placed */
    "{\"eventId\":\"5a0c1e00-0000-4000-8000-000000000003\",\"eventType\":\"order.placed\","
    "\"aggregateId\":\"o-1001\",\"aggregateType\":\"Order\",\"timestamp\":\"2026-01-15T10:10:00Z\","
    "\"version\":1,\"metadata\":{\"correlationId\":\"corr-o-1001\",\"userId\":\"u-c-1\"},"
    "\"payload\":{\"orderId\":\"o-1001\",\"customerId\":\"c-1\",\"items\":[{\"sku\":\"SKU-MUG\","
    "\"qty\":1,\"unitPrice\":\"19.99\"},{\"sku\":\"SKU-TEA\",\"qty\":2,\"unitPrice\":\"10.00\"}],"
    "\"total\":{\"amount\":\"39.99\",\"currency\":\"EUR\"}}}",
    /* a refund that the orders model's `when:` looks at */
    "{\"eventId\":\"e-2\",\"eventType\":\"order.refunded\",\"aggregateId\":\"o-1001\","
    "\"aggregateType\":\"Order\",\"timestamp\":\"2026-01-15T12:00:00Z\",\"version\":\"7\","
    "\"metadata\":{},\"payload\":{\"orderId\":\"o-1001\",\"reason\":\"fraud\",\"amount\":150,"
    "\"qty\":3,\"unitPrice\":\"19.99\",\"customerId\":\"c-1\",\"name\":\"Chlo\u00e9\"}}",
    /* every unusual kind of value */
    "{\"eventId\":\"e-3\",\"eventType\":\"order.line_added\",\"aggregateId\":\"\","
    "\"aggregateType\":null,\"timestamp\":\"not a time\",\"version\":-9223372036854775808,"
    "\"metadata\":{\"a\":{\"b\":{\"c\":[[],{}]}}},\"payload\":{\"orderId\":\"'; DROP TABLE x;--\","
    "\"customerId\":null,\"qty\":\"abc\",\"unitPrice\":1e308,\"tiny\":5e-324,\"big\":"
    "9223372036854775807,\"items\":[],\"mixed\":[1,\"2\",null,true,{\"qty\":3},[4]],"
    "\"name\":\"\u65e5\u672c\\u00e9x\",\"total\":{\"amount\":\"NaN\",\"currency\":\"\"},"
    "\"neg\":-0.0,\"t\":true,\"f\":false,\"n\":null,\"s\":\"  42  \"}}",
};

static json_t *fuzz_events[sizeof(fuzz_envelopes) / sizeof(fuzz_envelopes[0])];

static json_t *decode_envelope_text(const char *text)
{
    const char *names[] = {"event"}, *values[] = {text};
    size_t name_lens[] = {5}, value_lens[] = {strlen(text)};
    EntryFields f = {1, names, name_lens, values, value_lens};
    json_t *ev = NULL;
    PjError err = {0};

    if (event_decode("orders", "1768471800000-0", &f, "event", &ev, &err) < 0) {
        fprintf(stderr, "fuzz: a sample event does not decode: %s\n", err.message);
        abort();
    }
    return ev;
}

size_t fuzz_sample_count(void)
{
    return ARRAY_SIZE(fuzz_envelopes);
}

const json_t *fuzz_sample_event(size_t i)
{
    if (i >= ARRAY_SIZE(fuzz_events))
        abort();
    if (fuzz_events[i] == NULL)
        fuzz_events[i] = decode_envelope_text(fuzz_envelopes[i]);
    return fuzz_events[i];
}

/* ---- the shipped read models ---- */

static FuzzModels fuzz_models;

static void plan_all(FuzzModels *m)
{
    PjError err = {0};

    m->plans = xcalloc(m->set->count, sizeof(*m->plans));
    for (size_t i = 0; i < m->set->count; i++) {
        if (applier_plan_new(m->set, i, &m->plans[i], &err) < 0) {
            fprintf(stderr, "fuzz: cannot plan read model \"%s\": %s\n", m->set->models[i].name,
                    err.message);
            abort();
        }
    }
}

const FuzzModels *fuzz_shipped_models(void)
{
    Diagnostics diag = {0};

    if (fuzz_models.set != NULL)
        return &fuzz_models;
    if (model_load_dir(PROJECTOR_SOURCE_DIR "/readmodels", &fuzz_models.set, &diag) < 0) {
        diag_print(&diag, stderr);
        fprintf(stderr, "fuzz: cannot load %s/readmodels\n", PROJECTOR_SOURCE_DIR);
        abort();
    }
    diag_done(&diag);
    plan_all(&fuzz_models);
    return &fuzz_models;
}

void fuzz_bind_all(const ModelSet *set, ApplierPlan *const *plans, const json_t *ev)
{
    Bound bound = {0};
    PjError err = {0};

    for (size_t i = 0; i < set->count; i++) {
        int rc = applier_bind(plans[i], ev, &bound, &err);
        /* Nothing may be appended when the event fails or is not handled. */
        if (rc != 0 && bound.count != 0)
            abort();
        bound_reset(&bound);
    }
    bound_done(&bound);
}

/* ---- scratch folder and logger ---- */

static char fuzz_dir[64];

static void remove_scratch_dir(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fuzz_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz: could not remove %s\n", fuzz_dir);
}

const char *fuzz_scratch_dir(void)
{
    if (fuzz_dir[0] != '\0')
        return fuzz_dir;
    snprintf(fuzz_dir, sizeof(fuzz_dir), "/tmp/projector-fuzz.XXXXXX");
    if (mkdtemp(fuzz_dir) == NULL) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(remove_scratch_dir);
    return fuzz_dir;
}

void fuzz_quiet_logs(void)
{
    log_set_level(getenv("FUZZ_VERBOSE") != NULL ? LOG_DEBUG : LOG_ERROR);
}
