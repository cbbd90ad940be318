/* ledger.h - the head of the ledger read model that the merge suites (unit and against
 * PostgreSQL) share: its table, key, version and columns of every kind a fold meets; each
 * suite adds its own actions after "on:".
 */
#ifndef PROJECTOR_TEST_LEDGER_H
#define PROJECTOR_TEST_LEDGER_H

#define LEDGER_HEAD_YAML                                                                           \
    "readmodel: ledger\n"                                                                          \
    "table: ledger\n"                                                                              \
    "streams: [ledger]\n"                                                                          \
    "key: [id, n]\n"                                                                               \
    "version: version\n"                                                                           \
    "columns:\n"                                                                                   \
    "  id: text\n"                                                                                 \
    "  n: integer\n"                                                                               \
    "  owner: { type: text, nullable: true }\n"                                                    \
    "  tag: { type: text, nullable: true }\n"                                                      \
    "  count: { type: integer, default: 0 }\n"                                                     \
    "  amount: { type: \"numeric(12,2)\", default: 0 }\n"                                          \
    "  score: { type: double precision, default: 1.5 }\n"                                          \
    "  version: { type: bigint, nullable: true }\n"                                                \
    "on:\n"

#endif
