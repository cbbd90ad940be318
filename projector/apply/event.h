/* event.h - one Redis stream entry -> the normalized event that read models see.
 *
 * Two encodings, detected per entry: an envelope (one field, named by redis.event_field,
 * holding the JSON envelope) or flat fields (type, event_id, ..., payload and metadata as
 * JSON text). Both become one JSON object with the keys type, event_id, aggregate_id,
 * aggregate_type, version, occurred_at, payload, metadata, stream, entry_id. Pure.
 */
#ifndef PROJECTOR_EVENT_H
#define PROJECTOR_EVENT_H

#include <jansson.h>

#include "base/entry.h"
#include "base/util.h"

/* Builds the normalized event. stream, entry_id and event_field are borrowed.
 * Returns 0 with *ret owned by the caller, or -PJ_EPERMANENT with err set when the
 * entry cannot be an event: no fields, invalid JSON in the envelope, payload or metadata
 * (with the position jansson reports), an envelope that is not an object, a field that
 * is not valid UTF-8. A string version that spells an integer becomes a JSON integer. */
int event_decode(const char *stream, const char *entry_id, const EntryFields *fields,
                 const char *event_field, json_t **ret, PjError *err) PJ_MUSTCHECK;

/* The event's type without decoding the entry: the flat "type" field, or the envelope's
 * top-level "eventType" found by a scan that only follows strings and brackets. Writes it
 * NUL-terminated to buf and returns its length, or returns -1 when that cannot be told
 * for certain (no type, an escape in the type or a key, a duplicate "eventType", text
 * that is not one JSON object, a type of cap bytes or more): then decode the entry. A
 * type found here is what event_decode would put in "type" if the entry decodes. */
int event_peek_type(const EntryFields *fields, const char *event_field, char *buf, size_t cap);

/* Appends to ctx the log fields of an entry (log.h): " stream=S entry=ID", and when the
 * entry decodes, its event_id, correlation_id and causation_id (metadata.correlationId and
 * metadata.causationId) where it has them. A value that is not one plain word (a space, an
 * '=', a control character, over 128 bytes) is left out rather than mangled. */
void event_log_context(const char *stream, const char *entry_id, const EntryFields *fields,
                       const char *event_field, StrBuf *ctx);

/* The raw entry as a JSON object {"name": "value", ...} for the dead-letter table; bytes
 * that are not valid UTF-8 are replaced by U+FFFD so the raw entry is always storable.
 * Caller owns the reference. */
json_t *event_raw_json(const EntryFields *fields);

#endif
