/* refusal.h - the column of a value PostgreSQL refused: its error fields (from libpq)
 * read through the plan of the statement it refused (apply/applier.h), for the daemon's
 * dead letters and `projector dlq retry` alike.
 */
#ifndef PROJECTOR_REFUSAL_H
#define PROJECTOR_REFUSAL_H

#include <libpq-fe.h>

#include "apply/applier.h"
#include "base/util.h"

/* PostgreSQL names the type of a value it refuses ("value too long for type character
 * varying(4)"), not its column: err (PostgreSQL's error for res, a failed result of bound
 * statement b) names the column too when b's plan can tell which it is ("could not apply:
 * column \"code\": value too long ..."). */
void refusal_name_column(const ApplierPlan *plan, const BoundStatement *b, const PGresult *res,
                         PjError *err);

#endif
