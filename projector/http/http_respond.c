/* http_respond.c - the answers of the endpoints: a body (JSON, or the text of /metrics)
 * queued on its connection with its content type, no-store caching and one header more
 * when it needs one; an error is {"error": "..."}.
 */
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

#include "base/json_text.h"
#include "http/http_internal.h"

enum MHD_Result http_queue_body(struct MHD_Connection *c, unsigned status, char *body,
                                const char *content_type, HttpHeader extra)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    (void)MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    (void)MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (extra.name)
        (void)MHD_add_response_header(resp, extra.name, extra.value);
    ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Takes the reference to doc. */
enum MHD_Result http_respond_json_with(struct MHD_Connection *c, unsigned status, json_t *doc,
                                       HttpHeader extra)
{
    char *text = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(12));
    char *body = xasprintf("%s\n", text ? text : "{}");

    free(text);
    json_decref(doc);
    return http_queue_body(c, status, body, "application/json", extra);
}

enum MHD_Result http_respond_json(struct MHD_Connection *c, unsigned status, json_t *doc)
{
    return http_respond_json_with(c, status, doc, (HttpHeader){NULL, NULL});
}

enum MHD_Result http_respond_error_with(struct MHD_Connection *c, unsigned status,
                                        const char *message, HttpHeader extra)
{
    json_t *doc = json_object();

    json_object_set_new(doc, "error", json_text_string(message));
    return http_respond_json_with(c, status, doc, extra);
}

enum MHD_Result http_respond_error(struct MHD_Connection *c, unsigned status, const char *message)
{
    return http_respond_error_with(c, status, message, (HttpHeader){NULL, NULL});
}
