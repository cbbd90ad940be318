/* event.c - decode a stream entry (envelope or flat fields) into the normalized event.
 *
 * Owns no state. The envelope keys are camelCase (eventId, eventType, ...), the flat fields
 * snake_case; both map onto the same normalized keys, so a read model never cares which
 * encoding a producer used.
 */
#include "apply/event.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* envelope key -> normalized key */
static const char *const envelope_map[][2] = {
    {"eventId", "event_id"},         {"eventType", "type"},
    {"aggregateId", "aggregate_id"}, {"aggregateType", "aggregate_type"},
    {"timestamp", "occurred_at"},    {"version", "version"},
    {"metadata", "metadata"},        {"payload", "payload"},
};

/* flat field names that are copied as strings */
static const char *const flat_strings[] = {"type", "event_id", "aggregate_id", "aggregate_type",
                                           "occurred_at"};
/* flat field names that hold JSON text */
static const char *const flat_json[] = {"payload", "metadata"};

static bool name_is(const EntryFields *f, size_t i, const char *name)
{
    size_t n = strlen(name);
    return f->name_lens[i] == n && memcmp(f->names[i], name, n) == 0;
}

static int find_field(const EntryFields *f, const char *name)
{
    for (size_t i = 0; i < f->count; i++)
        if (name_is(f, i, name))
            return (int)i;
    return -1;
}

static bool utf8_valid(const char *s, size_t len)
{
    json_t *j = json_stringn(s, len);
    bool ok = j != NULL;
    json_decref(j);
    return ok;
}

/* "3" -> 3; anything else stays a string. Takes ownership of value. */
static json_t *version_value(json_t *value)
{
    if (!json_is_string(value))
        return value;
    const char *s = json_string_value(value);
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno == 0 && end != s && *end == '\0' && s[0] != ' ' && s[0] != '+') {
        json_decref(value);
        return json_integer((json_int_t)v);
    }
    return value;
}

static int parse_json_field(const EntryFields *f, size_t i, json_t **ret, PjError *err)
{
    json_error_t jerr;
    json_t *j =
        json_loadb(f->values[i], f->value_lens[i], JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (j == NULL)
        return pj_error_set(err, PJ_EPERMANENT,
                            "invalid JSON in field \"%.*s\" at line %d column %d: %s",
                            (int)f->name_lens[i], f->names[i], jerr.line, jerr.column, jerr.text);
    *ret = j;
    return 0;
}

static int decode_envelope(const EntryFields *f, size_t field, json_t *event, PjError *err)
{
    json_t *env = NULL;
    int r = parse_json_field(f, field, &env, err);
    if (r < 0)
        return r;
    if (!json_is_object(env)) {
        json_decref(env);
        return pj_error_set(err, PJ_EPERMANENT,
                            "the envelope in field \"%.*s\" is not a JSON object",
                            (int)f->name_lens[field], f->names[field]);
    }
    for (size_t i = 0; i < ARRAY_SIZE(envelope_map); i++) {
        json_t *v = json_object_get(env, envelope_map[i][0]);
        if (v == NULL)
            continue;
        json_incref(v);
        if (strcmp(envelope_map[i][1], "version") == 0)
            v = version_value(v);
        json_object_set_new(event, envelope_map[i][1], v);
    }
    json_decref(env);
    return 0;
}

static int decode_flat(const EntryFields *f, json_t *event, PjError *err)
{
    for (size_t i = 0; i < f->count; i++) {
        for (size_t k = 0; k < ARRAY_SIZE(flat_strings); k++)
            if (name_is(f, i, flat_strings[k]))
                json_object_set_new(event, flat_strings[k],
                                    json_stringn(f->values[i], f->value_lens[i]));
        if (name_is(f, i, "version"))
            json_object_set_new(event, "version",
                                version_value(json_stringn(f->values[i], f->value_lens[i])));
        for (size_t k = 0; k < ARRAY_SIZE(flat_json); k++) {
            if (!name_is(f, i, flat_json[k]))
                continue;
            json_t *j;
            int r = parse_json_field(f, i, &j, err);
            if (r < 0)
                return r;
            json_object_set_new(event, flat_json[k], j);
        }
    }
    return 0;
}

/* Every name and value must be UTF-8 without NUL bytes: C strings end at a NUL, so
 * "order.placed\0junk" would be read as "order.placed", and two keys that differ after a
 * NUL would land on one row. */
static int check_fields(const EntryFields *f, PjError *err)
{
    for (size_t i = 0; i < f->count; i++) {
        if (!utf8_valid(f->names[i], f->name_lens[i]) ||
            memchr(f->names[i], '\0', f->name_lens[i]) != NULL)
            return pj_error_set(err, PJ_EPERMANENT,
                                "field name %zu is not valid UTF-8 without NUL bytes", i + 1);
        if (!utf8_valid(f->values[i], f->value_lens[i]))
            return pj_error_set(err, PJ_EPERMANENT,
                                "the value of field \"%.*s\" is not valid UTF-8",
                                (int)f->name_lens[i], f->names[i]);
        if (memchr(f->values[i], '\0', f->value_lens[i]) != NULL)
            return pj_error_set(err, PJ_EPERMANENT, "the value of field \"%.*s\" holds a NUL byte",
                                (int)f->name_lens[i], f->names[i]);
    }
    return 0;
}

int event_decode(const char *stream, const char *entry_id, const EntryFields *fields,
                 const char *event_field, json_t **ret, PjError *err)
{
    if (fields->count == 0)
        return pj_error_set(err, PJ_EPERMANENT, "the entry has no fields");
    int r = check_fields(fields, err);
    if (r < 0)
        return r;
    json_t *event = json_object();
    int envelope = find_field(fields, event_field);
    r = envelope >= 0 ? decode_envelope(fields, (size_t)envelope, event, err)
                      : decode_flat(fields, event, err);
    if (r < 0) {
        json_decref(event);
        return r;
    }
    json_object_set_new(event, "stream", json_string(stream));
    json_object_set_new(event, "entry_id", json_string(entry_id));
    *ret = event;
    return 0;
}

/* ---- the type without decoding ---- */

typedef struct Scan {
    const char *p, *end;
} Scan;

static void scan_ws(Scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* At '"': moves past the closing quote. With plain false, a backslash or a control
 * character fails it (the caller wants the bytes as they are). */
static bool scan_string(Scan *s, bool plain, const char **start, size_t *len)
{
    if (s->p >= s->end || *s->p != '"')
        return false;
    const char *b = ++s->p;
    while (s->p < s->end && *s->p != '"') {
        if (*s->p == '\\' || (unsigned char)*s->p < 0x20) {
            if (plain)
                return false;
            if (*s->p == '\\')
                s->p++;
        }
        s->p++;
    }
    if (s->p >= s->end)
        return false;
    *start = b;
    *len = (size_t)(s->p - b);
    s->p++;
    return true;
}

/* Moves past one value of any kind: a scalar up to the next delimiter, a string, or an
 * object or array by counting brackets outside strings (not checking that they pair up:
 * the decoder does that for every entry a read model handles). */
static bool scan_value(Scan *s)
{
    const char *b;
    size_t n, depth = 0;
    if (s->p >= s->end)
        return false;
    if (*s->p != '"' && *s->p != '{' && *s->p != '[') {
        const char *start = s->p;
        while (s->p < s->end && strchr(",}] \t\r\n", *s->p) == NULL)
            s->p++;
        return s->p > start;
    }
    do {
        if (s->p >= s->end)
            return false;
        char c = *s->p;
        if (c == '"') {
            if (!scan_string(s, false, &b, &n))
                return false;
            continue;
        }
        if (c == '{' || c == '[')
            depth++;
        else if (c == '}' || c == ']')
            depth--;
        s->p++;
    } while (depth > 0);
    return true;
}

/* The top-level "eventType" string of an envelope; false when unsure. */
static bool peek_envelope(const char *text, size_t len, const char **type, size_t *type_len)
{
    Scan s = {text, text + len};
    bool found = false;
    scan_ws(&s);
    if (s.p >= s.end || *s.p++ != '{')
        return false;
    scan_ws(&s);
    if (s.p < s.end && *s.p == '}')
        return false;
    for (;;) {
        const char *key;
        size_t klen;
        if (!scan_string(&s, true, &key, &klen))
            return false;
        scan_ws(&s);
        if (s.p >= s.end || *s.p++ != ':')
            return false;
        scan_ws(&s);
        if (klen == 9 && memcmp(key, "eventType", 9) == 0) {
            if (found || !scan_string(&s, true, type, type_len))
                return false; /* a duplicate, or not a plain string */
            found = true;
        } else if (!scan_value(&s)) {
            return false;
        }
        scan_ws(&s);
        if (s.p < s.end && *s.p == ',') {
            s.p++;
            scan_ws(&s);
            continue;
        }
        if (s.p >= s.end || *s.p++ != '}')
            return false;
        scan_ws(&s);
        return found && s.p == s.end;
    }
}

int event_peek_type(const EntryFields *fields, const char *event_field, char *buf, size_t cap)
{
    const char *type = NULL;
    size_t len = 0;
    int envelope = find_field(fields, event_field);
    if (envelope >= 0) {
        if (!peek_envelope(fields->values[envelope], fields->value_lens[envelope], &type, &len))
            return -1;
    } else {
        int t = -1;
        for (size_t i = 0; i < fields->count; i++) {
            if (!name_is(fields, i, "type"))
                continue;
            if (t >= 0)
                return -1; /* decoding keeps the last of several: do not guess */
            t = (int)i;
        }
        if (t < 0)
            return -1;
        type = fields->values[t];
        len = fields->value_lens[t];
    }
    if (len >= cap || memchr(type, '\0', len) != NULL)
        return -1;
    memcpy(buf, type, len);
    buf[len] = '\0';
    return (int)len;
}

/* s as a JSON string with every invalid UTF-8 sequence (and NUL) replaced by U+FFFD. */
static json_t *sanitized_string(const char *s, size_t len)
{
    /* PostgreSQL's jsonb cannot hold U+0000, so NUL bytes are replaced too. */
    json_t *j = memchr(s, '\0', len) == NULL ? json_stringn(s, len) : NULL;
    if (j != NULL)
        return j;
    StrBuf sb = {0};
    strbuf_append(&sb, "");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        json_t *piece = n > 0 && i + n <= len && c != 0 ? json_stringn(s + i, n) : NULL;
        if (piece != NULL) {
            strbuf_appendn(&sb, s + i, n);
            i += n - 1;
            json_decref(piece);
        } else {
            strbuf_append(&sb, "\xEF\xBF\xBD");
        }
    }
    j = json_stringn(sb.buf, sb.len);
    strbuf_done(&sb);
    return j != NULL ? j : json_string("");
}

json_t *event_raw_json(const EntryFields *fields)
{
    json_t *raw = json_object();
    for (size_t i = 0; i < fields->count; i++) {
        json_t *name = sanitized_string(fields->names[i], fields->name_lens[i]);
        json_object_set_new(raw, json_string_value(name),
                            sanitized_string(fields->values[i], fields->value_lens[i]));
        json_decref(name);
    }
    return raw;
}

/* ---- log fields ---- */

static void log_field(StrBuf *ctx, const char *key, const char *value)
{
    size_t n = value != NULL ? strlen(value) : 0;
    if (n == 0 || n > 128)
        return;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)value[i] <= 0x20 || value[i] == '=' || value[i] == 0x7f)
            return;
    strbuf_appendf(ctx, " %s=%s", key, value);
}

void event_log_context(const char *stream, const char *entry_id, const EntryFields *fields,
                       const char *event_field, StrBuf *ctx)
{
    log_field(ctx, "stream", stream);
    log_field(ctx, "entry", entry_id);
    json_t *ev = NULL;
    PjError err;
    if (event_decode(stream, entry_id, fields, event_field, &ev, &err) < 0)
        return;
    const json_t *meta = json_object_get(ev, "metadata");
    log_field(ctx, "event_id", json_string_value(json_object_get(ev, "event_id")));
    log_field(ctx, "correlation_id", json_string_value(json_object_get(meta, "correlationId")));
    log_field(ctx, "causation_id", json_string_value(json_object_get(meta, "causationId")));
    json_decref(ev);
}
