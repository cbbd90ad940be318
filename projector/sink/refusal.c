/* refusal.c - see refusal.h. */
#include "sink/refusal.h"

#include "sink/pg.h"

void refusal_name_column(const ApplierPlan *plan, const BoundStatement *b, const PGresult *res,
                         PjError *err)
{
    ApplierRefusal r = {
        .sqlstate = err->sqlstate,
        .primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY),
        .detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL),
        .context = PQresultErrorField(res, PG_DIAG_CONTEXT),
    };
    StrBuf column = {0};
    if (applier_refused_column(plan, b, &r, &column))
        pg_error_place(err, "could not apply", column.buf);
    strbuf_done(&column);
}
