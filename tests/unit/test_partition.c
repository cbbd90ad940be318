/* test_partition.c - partition_of without a server: an event's statements go to the
 * partition of the one row they touch, the same for the same row key whatever the other
 * values, within 0..nparts-1 and spread over all of them; PARTITION_NONE when they touch
 * no single row or rows of different partitions.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apply/applier.h"
#include "model/model.h"
#include "sink/partition.h"
#include "testenv.h"

static const char things_yaml[] = "readmodel: things\n"
                                  "table: things\n"
                                  "streams: [things]\n"
                                  "key: [id, n]\n"
                                  "columns:\n"
                                  "  id: text\n"
                                  "  n: integer\n"
                                  "  owner: { type: text, nullable: true }\n"
                                  "on:\n"
                                  "  put:\n"
                                  "    upsert:\n"
                                  "      id: $.payload.id\n"
                                  "      n: $.payload.n\n"
                                  "      owner: $.payload.owner\n"
                                  "  touch_twice:\n"
                                  "    - upsert:\n"
                                  "        id: $.payload.id\n"
                                  "        n: $.payload.n\n"
                                  "    - update:\n"
                                  "        where: { n: $.payload.n, id: $.payload.id }\n"
                                  "        set: { owner: $.payload.owner }\n"
                                  "  put_and_drop:\n"
                                  "    - upsert:\n"
                                  "        id: $.payload.id\n"
                                  "        n: $.payload.n\n"
                                  "    - delete:\n"
                                  "        where: { id: $.payload.other, n: $.payload.n }\n"
                                  "  retag:\n"
                                  "    update:\n"
                                  "      where: { owner: $.payload.owner }\n"
                                  "      set: { owner: $.payload.id }\n";

static ModelSet *set;
static ApplierPlan *plan;
static Bound bound;
static StrBuf key;

static void setup(void)
{
    PjError err = {0};

    set = testenv_load_model_text("things.yaml", things_yaml);
    cr_assert_not_null(set, "things model does not load");
    cr_assert_eq(applier_plan_new(set, 0, &plan, &err), 0, "%s", err.message);
}

static void teardown(void)
{
    strbuf_done(&key);
    bound_done(&bound);
    plan = applier_plan_free(plan);
    model_set_free(set);
    set = NULL;
}

TestSuite(partition, .init = setup, .fini = teardown);

/* The partition of one event among nparts; the statements are bound afresh. */
static int part_of(const char *type, const char *id, const char *n, const char *owner,
                   const char *other, int nparts)
{
    char *text = xasprintf("{\"type\":\"%s\",\"payload\":{\"id\":\"%s\",\"n\":\"%s\","
                           "\"owner\":\"%s\",\"other\":\"%s\"}}",
                           type, id, n, owner, other);
    json_error_t jerr;
    json_t *event = json_loads(text, 0, &jerr);
    PjError err = {0};
    cr_assert_not_null(event, "%s: %s", text, jerr.text);
    bound_reset(&bound);
    cr_assert_eq(applier_bind(plan, event, &bound, &err), 0, "%s: %s", text, err.message);
    cr_assert_gt(bound.count, 0);
    int p = partition_of(plan, bound.items, bound.count, nparts, &key);
    json_decref(event);
    free(text);
    return p;
}

static int put(const char *id, int nparts)
{
    return part_of("put", id, "1", "o", "", nparts);
}

Test(partition, no_statement_is_partition_zero)
{
    for (int nparts = 1; nparts <= PARTITION_MAX; nparts++)
        cr_expect_eq(partition_of(plan, NULL, 0, nparts, &key), 0, "nparts %d", nparts);
}

Test(partition, within_bounds_and_the_same_for_the_same_row)
{
    static const int nparts[] = {1, 2, 3, 4, 7, PARTITION_MAX};
    for (size_t k = 0; k < ARRAY_SIZE(nparts); k++) {
        for (int i = 0; i < 200; i++) {
            char id[16];
            snprintf(id, sizeof id, "key-%d", i);
            int p = put(id, nparts[k]);
            cr_assert(p >= 0 && p < nparts[k], "%s: partition %d of %d", id, p, nparts[k]);
            cr_assert_eq(put(id, nparts[k]), p, "%s moved on a second call", id);
            /* only the row key decides: other values, and other statements on the row */
            cr_assert_eq(part_of("put", id, "1", "someone else", "", nparts[k]), p, "%s", id);
            cr_assert_eq(part_of("touch_twice", id, "1", "x", "", nparts[k]), p, "%s", id);
        }
    }
}

Test(partition, every_part_of_the_key_counts)
{
    int differ_id = 0, differ_n = 0;
    for (int i = 0; i < 100; i++) {
        char a[16], b[16];
        snprintf(a, sizeof a, "k%d", i);
        snprintf(b, sizeof b, "%d", i + 2);
        differ_id += part_of("put", a, "1", "o", "", 8) != part_of("put", "k", "1", "o", "", 8);
        differ_n += part_of("put", "k", b, "o", "", 8) != part_of("put", "k", "1", "o", "", 8);
    }
    cr_expect_gt(differ_id, 50, "the id hardly moves the partition");
    cr_expect_gt(differ_n, 50, "n hardly moves the partition");
}

Test(partition, rows_spread_over_every_partition)
{
    enum { NPARTS = 4, ROWS = 400 };
    int count[NPARTS] = {0};
    for (int i = 0; i < ROWS; i++) {
        char id[16];
        snprintf(id, sizeof id, "order-%d", i);
        count[put(id, NPARTS)]++;
    }
    for (int p = 0; p < NPARTS; p++)
        cr_expect_geq(count[p], ROWS / NPARTS / 2, "partition %d got %d of %d rows", p, count[p],
                      ROWS);
}

Test(partition, statements_on_two_rows_share_a_partition_or_none)
{
    /* find two rows in different partitions, and two in the same one */
    const int nparts = 4;
    int pa = put("a", nparts);
    char other_diff[16] = "", other_same[16] = "";
    for (int i = 0; i < 100 && (other_diff[0] == '\0' || other_same[0] == '\0'); i++) {
        char id[16];
        snprintf(id, sizeof id, "b%d", i);
        int p = put(id, nparts);
        if (p != pa && other_diff[0] == '\0')
            strcpy(other_diff, id);
        if (p == pa && other_same[0] == '\0')
            strcpy(other_same, id);
    }
    cr_assert(other_diff[0] != '\0' && other_same[0] != '\0');
    cr_expect_eq(part_of("put_and_drop", "a", "1", "o", other_diff, nparts), PARTITION_NONE);
    cr_expect_eq(part_of("put_and_drop", "a", "1", "o", other_same, nparts), pa);
    cr_expect_eq(part_of("put_and_drop", "a", "1", "o", "a", nparts), pa, "one row twice");
}

Test(partition, no_single_row_is_none)
{
    cr_expect_eq(part_of("retag", "a", "1", "o", "", 4), PARTITION_NONE, "fan-out update");
    /* "01" is 1 to PostgreSQL: two spellings of one row must not land apart */
    cr_expect_eq(part_of("put", "a", "01", "o", "", 4), PARTITION_NONE, "non-canonical key");
    cr_expect_eq(part_of("put", "a", " 1", "o", "", 4), PARTITION_NONE, "non-canonical key");
}
