/*
 * framing.c - owns the HTTP/1 message-framing checks of RFC 9112 §6.3 that h2o 2.2.5 leaves
 * open, as an h2o handler registered ahead of the Lua host.
 *
 * What h2o 2.2.5 does itself (lib/http1.c, init_headers / create_entity_reader): it takes
 * Content-Length and Transfer-Encoding out of req->headers; Transfer-Encoding wins over any
 * Content-Length, the FIRST Content-Length wins over later ones, and the connection stays
 * persistent. So "Content-Length + Transfer-Encoding: chunked" or two different
 * Content-Lengths frame the body differently here than in a proxy in front of us, and the
 * bytes left over are parsed as a second request (request smuggling). h2o does refuse, with
 * its own 400 text/plain and a closed connection, a first Content-Length that is not plain
 * digits (sign, empty, 19+ digits) and a Transfer-Encoding other than "chunked" (any case).
 *
 * This handler re-reads the request head, still intact at the start of the connection's
 * input buffer when a request is dispatched (h2o consumes it only after the response), and
 * refuses with a 400 JSON error and `Connection: close` (req->http1_is_persistent = 0, so h2o
 * closes after sending and never parses what follows):
 *   - Transfer-Encoding together with Content-Length;
 *   - Content-Length more than once, even with identical values (RFC 9112 §6.3 allows
 *     recovering from an identical list; we choose to refuse: no client of ours sends it);
 *   - a Content-Length that is not 1-18 digits (as h2o would read it);
 *   - Transfer-Encoding more than once, or other than "chunked", or in an HTTP/1.0 request;
 *   - an obsolete folded header line (RFC 9112 §5.2 allows refusing it).
 * HTTP/2 frames its own messages and is not looked at.
 *
 * The errors h2o sends itself before any handler runs (a broken Content-Length or chunked
 * body, an unknown Transfer-Encoding, 413, 417) are bound to the host's fallback path; a
 * filter there turns their text/plain body into the service's JSON error, {"error":"..."}.
 */
#include "framing.h"
#include "framing_scan.h"
#include "log.h"
#include "metrics.h"
#include "worker.h"

#include <string.h>

static const char *framing_fault(h2o_req_t *req)
{
    if (req->version >= 0x200 || req->conn->callbacks->get_socket == NULL)
        return NULL;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    if (sock == NULL || sock->input == NULL)
        return NULL;
    return os_framing_check_head(sock->input->bytes, sock->input->size, req->version);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    const char *fault = framing_fault(req);
    if (fault == NULL)
        return -1; /* framed soundly: the next handler (the Lua host) answers */

    os_worker_t *worker = H2O_STRUCT_FROM_MEMBER(os_worker_t, ctx, req->conn->ctx);
    os_log(OS_LOG_WARN, "refused a request with ambiguous framing: %s", fault);
    if (worker->metrics != NULL)
        os_metrics_observe_http(worker->metrics, "unmatched", req->method.base, req->method.len, 400, 0);
    h2o_iovec_t body = h2o_concat(&req->pool, h2o_iovec_init(H2O_STRLIT("{\"error\":\"bad request framing\",\"details\":{\"reason\":\"")),
                                  h2o_iovec_init(fault, strlen(fault)), h2o_iovec_init(H2O_STRLIT("\"}}")));
    /* The bytes after this head cannot be trusted to start a request: close after answering. */
    req->http1_is_persistent = 0;
    req->res.status = 400;
    req->res.reason = "Bad Request";
    req->res.content_length = body.len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_send_inline(req, body.base, body.len);
    return 0;
}

/* ---- h2o's own errors as JSON ---- */

typedef struct json_error_ostream {
    h2o_ostream_t super;
    h2o_iovec_t text; /* the text/plain body so far */
} json_error_ostream_t;

static h2o_iovec_t json_error_body(h2o_mem_pool_t *pool, h2o_iovec_t text)
{
    static const char head[] = "{\"error\":\"", tail[] = "\"}"; /* as lib/response.lua's errors */
    char *out = h2o_mem_alloc_pool(pool, sizeof(head) + 6 * text.len + sizeof(tail)), *o = out;
    memcpy(o, head, sizeof(head) - 1);
    o += sizeof(head) - 1;
    for (size_t i = 0; i < text.len; i++) {
        unsigned char c = (unsigned char)text.base[i];
        if (c == '"' || c == '\\')
            *o++ = '\\', *o++ = (char)c;
        else if (c < 0x20 || c >= 0x7f) /* h2o's texts are ASCII; anything else is dropped */
            continue;
        else
            *o++ = (char)c;
    }
    memcpy(o, tail, sizeof(tail) - 1);
    o += sizeof(tail) - 1;
    return h2o_iovec_init(out, (size_t)(o - out));
}

static void json_error_send(h2o_ostream_t *_self, h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt,
                            h2o_send_state_t state)
{
    json_error_ostream_t *self = (void *)_self;
    for (size_t i = 0; i < bufcnt; i++)
        self->text = self->text.len == 0 ? bufs[i] : h2o_concat(&req->pool, self->text, bufs[i]);
    if (h2o_send_state_is_in_progress(state)) {
        /* h2o_send_inline, which sends these errors, never gets here: it sends once, final. */
        h2o_ostream_send_next(&self->super, req, NULL, 0, state);
        return;
    }
    h2o_iovec_t body = json_error_body(&req->pool, self->text);
    req->res.content_length = body.len; /* the headers go out with the first bytes, below */
    h2o_ostream_send_next(&self->super, req, &body, 1, state);
}

static void json_error_setup(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    ssize_t ct = h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (req->res.status >= 400 && ct != -1 && req->res.headers.entries[ct].value.len >= 10 &&
        h2o_memis(req->res.headers.entries[ct].value.base, 10, H2O_STRLIT("text/plain")) &&
        !h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("HEAD"))) {
        h2o_set_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, H2O_STRLIT("application/json"), 1);
        json_error_ostream_t *os = (void *)h2o_add_ostream(req, sizeof(*os), slot);
        os->super.do_send = json_error_send;
        os->text = h2o_iovec_init(NULL, 0);
        slot = &os->super.next;
    }
    (void)self;
    h2o_setup_next_ostream(req, slot);
}

void os_framing_guard(h2o_pathconf_t *pathconf)
{
    h2o_handler_t *handler = h2o_create_handler(pathconf, sizeof(*handler));
    handler->on_req = on_req;
}

void os_framing_register(h2o_hostconf_t *host, h2o_pathconf_t *pathconf)
{
    os_framing_guard(pathconf);
    h2o_filter_t *filter = h2o_create_filter(&host->fallback_path, sizeof(*filter));
    filter->on_setup_ostream = json_error_setup;
}
