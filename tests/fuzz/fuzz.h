/* fuzz.h - what the libFuzzer targets of tests/fuzz share: the entry points libFuzzer
 * calls (declared here so that -Wmissing-prototypes holds), sample events decoded the way
 * the daemon decodes them, the shipped read models, and a scratch folder per process.
 * Every helper aborts on a failure of its own setup: a target that cannot set up has no
 * result worth reporting.
 */
#ifndef PROJECTOR_FUZZ_H
#define PROJECTOR_FUZZ_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "apply/applier.h"
#include "model/model.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Number of fixed sample events (an order placed, a customer registered, and one whose
 * values are of every unusual kind: strings that are not numbers, nulls, empty arrays,
 * huge and tiny numbers, nested objects, non-ASCII text). */
size_t fuzz_sample_count(void);
/* The normalized event i (< fuzz_sample_count()); borrowed, lives until exit. */
const json_t *fuzz_sample_event(size_t i);

/* The shipped read models (PROJECTOR_SOURCE_DIR/readmodels) with one plan per model,
 * loaded once and kept until exit. */
typedef struct FuzzModels {
    ModelSet *set;
    ApplierPlan **plans; /* set->count plans */
} FuzzModels;
const FuzzModels *fuzz_shipped_models(void);

/* Binds ev against every plan of set (discarding the statements): evaluation of every
 * expression, condition and lookup key the event's type reaches. */
void fuzz_bind_all(const ModelSet *set, ApplierPlan *const *plans, const json_t *ev);

/* A folder of this process under /tmp (created on first use, removed at exit). */
const char *fuzz_scratch_dir(void);

/* Silences the daemon's logger (errors included) unless FUZZ_VERBOSE is set. */
void fuzz_quiet_logs(void);

#endif
