/* dlq_internal.h - what the dlq*.c files share, included by nothing else. Order, lowest
 * first: dlq_letter.c (printing and decoding one dead letter), then dlq_show.c (list, show)
 * and dlq_retry.c (retry, discard), then dlq.c (arguments and dispatch). A file uses only
 * names from files below it.
 */
#ifndef PROJECTOR_DLQ_INTERNAL_H
#define PROJECTOR_DLQ_INTERNAL_H

#include <jansson.h>
#include <stdio.h>

#include "cli/dlq.h"
#include "sink/pg.h"

/* ---- dlq_letter.c ---- */

#define DLQ_ID_BUFSZ 24 /* a dead letter's ID as text */

/* Writes s, which holds event data or a server's message, with its control characters
 * made visible (strbuf_append_visible): a terminal shows them and never obeys them. With
 * keep_lines, its line breaks and tabs stay (JSON laid out in lines). */
void dlq_put_text(FILE *out, const char *s, bool keep_lines);
/* The value at (row, col) of res (borrowed from res), or dflt when it is SQL NULL. */
const char *dlq_value_or(const PGresult *res, int row, int col, const char *dflt);
/* "dead letter 7 (read model "orders", entry 1-0 of stream "orders", type "order.placed")";
 * type may be NULL (an entry that did not decode). No line break. */
void dlq_print_letter(FILE *out, const char *id, const char *readmodel, const char *stream,
                      const char *entry_id, const char *type);
/* Runs sql_template (":\"schema\"" rendered, $1 the ID) for dead letter id, whose text
 * goes into idbuf. *ret gets the rows (the caller PQclear()s); -PJ_ENOTFOUND with err set
 * when there are none. */
int dlq_query_letter(Pg *pg, const Config *cfg, const char *sql_template, int64_t id,
                     char idbuf[DLQ_ID_BUFSZ], PGresult **ret, PjError *err) PJ_MUSTCHECK;
/* The line printed when there is nothing to list or retry; readmodel may be NULL. */
void dlq_print_none(FILE *out, const char *readmodel);
/* The normalized event of a stored raw entry; -PJ_EPERMANENT with err set when the raw
 * text is not a JSON object or the entry does not decode. *ret is the caller's. */
int dlq_decode_raw(const char *raw_text, const char *stream, const char *entry_id,
                   const char *event_field, json_t **ret, PjError *err) PJ_MUSTCHECK;

/* ---- dlq_show.c, dlq_retry.c: one subcommand each, on the session pg (borrowed) ----
 * Each returns as dlq_run does (dlq.h). */

int dlq_list(Pg *pg, const Config *cfg, const DlqArgs *a, FILE *out, PjError *err) PJ_MUSTCHECK;
int dlq_show(Pg *pg, const Config *cfg, const DlqArgs *a, FILE *out, PjError *err) PJ_MUSTCHECK;
int dlq_discard(Pg *pg, const Config *cfg, const DlqArgs *a, FILE *out, PjError *err) PJ_MUSTCHECK;
/* set (borrowed) holds the current read models. */
int dlq_retry(Pg *pg, const Config *cfg, const ModelSet *set, const DlqArgs *a, FILE *out,
              PjError *err) PJ_MUSTCHECK;

#endif
