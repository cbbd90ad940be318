/* json_text.h - JSON strings from C strings that come from outside (stream names, server
 * errors, event text) and so may not be valid UTF-8. Pure.
 */
#ifndef PROJECTOR_JSON_TEXT_H
#define PROJECTOR_JSON_TEXT_H

#include <jansson.h>

/* A JSON string that never fails: bytes that are not valid UTF-8 become '?'. Caller owns
 * the reference; s is borrowed. */
json_t *json_text_string(const char *s);

#endif
