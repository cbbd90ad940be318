/* test_pg.c - SQLSTATE classification without a server: what pg.h calls transient
 * (retried, never dead-lettered: no SQLSTATE at all, classes 08, 53 and 58, 57P0x,
 * 40001, 40P01, 55P03) and what it does not (a data error of one event).
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "sink/pg.h"

typedef struct StateCase {
    char state[8];
    bool transient;
    char why[48];
} StateCase;

ParameterizedTestParameters(pg, transient_sqlstate)
{
    static StateCase cases[] = {
        {"", true, "no SQLSTATE: the connection failed"},
        {"08000", true, "connection_exception"},
        {"08006", true, "connection_failure"},
        {"08P01", true, "protocol_violation"},
        {"40001", true, "serialization_failure"},
        {"40P01", true, "deadlock_detected"},
        {"53100", true, "disk_full"},
        {"53200", true, "out_of_memory"},
        {"53300", true, "too_many_connections"},
        {"55P03", true, "lock_not_available"},
        {"57P01", true, "admin_shutdown"},
        {"57P02", true, "crash_shutdown"},
        {"57P03", true, "cannot_connect_now"},
        {"58000", true, "system_error"},
        {"58030", true, "io_error"},
        {"40000", false, "transaction_rollback: not a retry case"},
        {"40002", false, "transaction_integrity_constraint_violation"},
        {"55000", false, "object_not_in_prerequisite_state"},
        {"55006", false, "object_in_use"},
        {"57014", false, "query_canceled: not 57P0x"},
        {"23505", false, "unique_violation"},
        {"23502", false, "not_null_violation"},
        {"22P02", false, "invalid_text_representation"},
        {"22003", false, "numeric_value_out_of_range"},
        {"42P01", false, "undefined_table"},
        {"42703", false, "undefined_column"},
        {"XX000", false, "internal_error"},
        {"00000", false, "successful_completion"},
        {"0", false, "cut short"},
        {"4000", false, "cut short: a prefix of 40001 only"},
    };
    return cr_make_param_array(StateCase, cases, ARRAY_SIZE(cases));
}

ParameterizedTest(StateCase *c, pg, transient_sqlstate)
{
    cr_expect_eq(pg_is_transient_sqlstate(c->state), c->transient, "\"%s\" (%s): expected %s",
                 c->state, c->why, c->transient ? "transient" : "permanent");
}

Test(pg, no_sqlstate_at_all_is_transient)
{
    cr_expect(pg_is_transient_sqlstate(NULL));
}

Test(pg, error_place_goes_after_what)
{
    PjError err = {0};
    pj_error_set(&err, PJ_EPERMANENT, "could not apply: value too long for type x");
    snprintf(err.sqlstate, sizeof err.sqlstate, "22001");
    pg_error_place(&err, "could not apply", "column \"code\"");
    cr_expect_str_eq(err.message, "could not apply: column \"code\": value too long for type x");
    cr_expect_str_eq(err.sqlstate, "22001");
    cr_expect_eq(err.code, PJ_EPERMANENT);
    pj_error_set(&err, PJ_EPERMANENT, "could not commit: x");
    pg_error_place(&err, "could not apply", "column \"code\"");
    cr_expect_str_eq(err.message, "could not commit: x", "another error stays as it is");
}
