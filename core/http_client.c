/*
 * http_client.c - owns downstream HTTP calls (DOWNSTREAM_TIMEOUT_MS, DOWNSTREAM_POOL_SIZE).
 *
 * Built on h2o's http1client: each worker keeps one h2o socket pool per host:port, so calls
 * reuse keep-alive connections, and host names are resolved by h2o's resolver threads, never
 * on the worker. A call is one request buffer written at once and a response body gathered
 * up to MAX_BODY bytes.
 *
 * DOWNSTREAM_TIMEOUT_MS bounds the whole call, retry included: it is the call's own deadline
 * (a timer), and h2o's per-I/O timeout is set above it so that it never fires first. The one
 * retry is made here, where it is knowable: a kept-alive connection taken from the pool that
 * fails before any byte of an answer arrived (the server had closed it while idle) is retried
 * once, at once, on a fresh connection, within what is left of the deadline.
 *
 * Outcomes: a status (the answer), OS_EUNAVAILABLE when the request provably never reached
 * the other side (no connection could be made), OS_ETIMEDOUT when it may have (the deadline
 * passed, or the connection broke after the request was written); os_http_maybe_sent() tells
 * which for the caller that must decide whether to compensate.
 *
 * The wait is the task's operation (task.h); the call is this file's per-task state, kept
 * until the task's next call (the response body lives in it) and freed by its done callback.
 */
#include "http_client.h"
#include "config.h"
#include "ffi.h"
#include "log.h"
#include "task.h"

#include <assert.h>
#include <h2o/http1client.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BODY (1024 * 1024)
#define IDLE_KEEPALIVE_MS 2000
#define IO_TIMEOUT_MARGIN_MS 1000

typedef struct pool_entry {
    struct pool_entry *next;
    char *hostport;
    h2o_socketpool_t pool;
} pool_entry_t;

struct os_http_pools {
    os_worker_t *worker;
    pool_entry_t *pools;
    h2o_timeout_t io_timeout;
    h2o_http1client_ctx_t ctx;
};

typedef struct http_call {
    os_task_ext_t ext; /* first: task->ext[OS_TASK_EXT_HTTP] points here */
    os_task_t *task;
    os_op_t op;
    os_timer_t deadline;
    h2o_http1client_t *client;
    h2o_iovec_t request;
    h2o_iovec_t host;
    uint16_t port;
    int connecting; /* inside connect_with_pool: a callback now means a pooled socket */
    int reused;     /* the attempt runs on a kept-alive connection from the pool */
    int retried;
    int maybe_sent; /* the request may have reached the other side */
    int status;
    char *body;
    size_t body_len;
} http_call_t;

static h2o_http1client_head_cb on_connect(h2o_http1client_t *client, const char *errstr, h2o_iovec_t **reqbufs,
                                          size_t *reqbufcnt, int *method_is_head);

os_http_pools_t *os_http_pools_create(os_worker_t *worker)
{
    os_http_pools_t *pools = calloc(1, sizeof(*pools));
    pools->worker = worker;
    /* Above the call's deadline, so that the deadline (OS_ETIMEDOUT) is what ends a slow call. */
    h2o_timeout_init(worker->ctx.loop, &pools->io_timeout,
                     (uint64_t)os_config.downstream_timeout_ms + IO_TIMEOUT_MARGIN_MS);
    pools->ctx.loop = worker->ctx.loop;
    pools->ctx.getaddr_receiver = &worker->ctx.receivers.hostinfo_getaddr;
    pools->ctx.io_timeout = &pools->io_timeout;
    return pools;
}

static h2o_socketpool_t *pool_for(os_http_pools_t *pools, h2o_iovec_t host, uint16_t port)
{
    char key[300];
    snprintf(key, sizeof(key), "%.*s:%u", (int)(host.len < 255 ? host.len : 255), host.base, port);
    for (pool_entry_t *e = pools->pools; e != NULL; e = e->next)
        if (strcmp(e->hostport, key) == 0)
            return &e->pool;
    pool_entry_t *e = calloc(1, sizeof(*e));
    e->hostport = strdup(key);
    h2o_socketpool_init_by_hostport(&e->pool, host, port, 0, (size_t)os_config.downstream_pool_size);
    h2o_socketpool_set_timeout(&e->pool, pools->worker->ctx.loop, IDLE_KEEPALIVE_MS);
    e->next = pools->pools;
    pools->pools = e;
    return &e->pool;
}

/* Ends the call's wait: the client is gone (finished, failed or cancelled by h2o's return). */
static void call_finish(http_call_t *call, int status, const char *error)
{
    call->client = NULL;
    os_timer_stop(&call->task->worker->timers, &call->deadline);
    if (error != NULL)
        os_task_set_error(call->task, "%s", error);
    os_op_complete(&call->op, status);
}

/* After the request was written: the answer broke off, so it may have been acted on. */
static void call_broken(http_call_t *call, const char *errstr)
{
    char msg[200];
    call->maybe_sent = 1;
    snprintf(msg, sizeof(msg), "no complete answer (the request may have been processed): %s", errstr);
    call_finish(call, OS_ETIMEDOUT, msg);
}

static int on_body(h2o_http1client_t *client, const char *errstr)
{
    http_call_t *call = client->data;
    h2o_buffer_t *input = client->sock->input;
    if (errstr != NULL && errstr != h2o_http1client_error_is_eos) {
        call_broken(call, errstr);
        return -1;
    }
    if (call->body_len + input->size > MAX_BODY) {
        call_finish(call, OS_EUNAVAILABLE, "response body over 1 MiB");
        return -1;
    }
    if (input->size != 0) {
        char *body = realloc(call->body, call->body_len + input->size);
        if (body == NULL) {
            call_finish(call, OS_EUNAVAILABLE, "out of memory");
            return -1;
        }
        memcpy(body + call->body_len, input->bytes, input->size);
        call->body = body;
        call->body_len += input->size;
        h2o_buffer_consume(&client->sock->input, input->size);
    }
    if (errstr == h2o_http1client_error_is_eos)
        call_finish(call, OS_OK, NULL);
    return 0;
}

static h2o_http1client_head_cb on_connect(h2o_http1client_t *client, const char *errstr, h2o_iovec_t **reqbufs,
                                          size_t *reqbufcnt, int *method_is_head);

static h2o_http1client_body_cb on_head(h2o_http1client_t *client, const char *errstr, int minor_version, int status,
                                       h2o_iovec_t msg, h2o_header_t *headers, size_t num_headers, int rlen)
{
    http_call_t *call = client->data;
    (void)minor_version, (void)msg, (void)headers, (void)num_headers, (void)rlen;
    if (errstr != NULL && errstr != h2o_http1client_error_is_eos) {
        int nothing_read = client->sock != NULL && client->sock->bytes_read == 0;
        if (call->reused && nothing_read && !call->retried) {
            /* The pooled connection had been closed by the server while idle: the request
             * was not read there. One retry at once, on a fresh connection (the pool may
             * hold more stale ones), inside the deadline still running. */
            call->retried = 1;
            call->reused = 0;
            h2o_http1client_connect(&call->client, call, &call->task->worker->http->ctx, call->host, call->port, 0,
                                    on_connect);
            return NULL;
        }
        call_broken(call, errstr);
        return NULL;
    }
    call->status = status;
    if (errstr == h2o_http1client_error_is_eos) {
        call_finish(call, OS_OK, NULL);
        return NULL;
    }
    return on_body;
}

static h2o_http1client_head_cb on_connect(h2o_http1client_t *client, const char *errstr, h2o_iovec_t **reqbufs,
                                          size_t *reqbufcnt, int *method_is_head)
{
    http_call_t *call = client->data;
    if (errstr != NULL) {
        /* No connection: the request was never written anywhere. */
        call_finish(call, OS_EUNAVAILABLE, errstr);
        return NULL;
    }
    /* h2o's socket pool calls back before connect_with_pool returns only with a pooled socket. */
    call->reused = call->connecting;
    call->maybe_sent = 1;
    *reqbufs = &call->request;
    *reqbufcnt = 1;
    *method_is_head = 0;
    return on_head;
}

static void on_deadline(os_timer_t *timer)
{
    http_call_t *call = H2O_STRUCT_FROM_MEMBER(http_call_t, deadline, timer);
    if (call->client != NULL)
        h2o_http1client_cancel(call->client);
    call->client = NULL;
    os_task_set_error(call->task, "no answer within %d ms", os_config.downstream_timeout_ms);
    os_op_complete(&call->op, OS_ETIMEDOUT);
}

/* The task is freed while the call is in flight. */
static void cancel_call(os_op_t *op)
{
    http_call_t *call = H2O_STRUCT_FROM_MEMBER(http_call_t, op, op);
    if (call->client != NULL)
        h2o_http1client_cancel(call->client);
    call->client = NULL;
    os_timer_stop(&call->task->worker->timers, &call->deadline);
}

static void call_done(os_task_ext_t *ext)
{
    http_call_t *call = (http_call_t *)ext;
    assert(!os_op_pending(&call->op) && call->client == NULL && !os_timer_is_active(&call->deadline));
    free(call->request.base);
    free(call->host.base);
    free(call->body);
    free(call);
}

/* ---- FFI ---- */

int os_http_request(os_task_t *task, const char *method, const char *url, size_t url_len, const char *headers,
                    size_t headers_len, const char *body, size_t body_len)
{
    h2o_url_t parsed;
    if (task->op != NULL) {
        os_task_set_error(task, "task is already waiting");
        return OS_ESTATE;
    }
    if (task->cancelled)
        return os_task_check_cancelled(task);
    if (h2o_url_parse(url, url_len, &parsed) != 0 || parsed.scheme != &H2O_URL_SCHEME_HTTP) {
        os_task_set_error(task, "bad URL (only http:// is supported): %.*s", (int)(url_len < 200 ? url_len : 200), url);
        return OS_ERR;
    }
    /* The previous call's response goes; this call is the task's HTTP state now. */
    os_task_ext_t *old = task->ext[OS_TASK_EXT_HTTP];
    task->ext[OS_TASK_EXT_HTTP] = NULL;
    if (old != NULL)
        old->done(old);
    http_call_t *call = calloc(1, sizeof(*call));
    if (call == NULL) {
        os_task_set_error(task, "out of memory");
        return OS_ERR;
    }
    call->ext.done = call_done;
    call->task = task;
    os_timer_init(&call->deadline, on_deadline);
    size_t cap = strlen(method) + parsed.path.len + parsed.authority.len + headers_len + 128 + body_len;
    call->request.base = malloc(cap);
    int n = snprintf(call->request.base, cap,
                     "%s %.*s HTTP/1.1\r\nHost: %.*s\r\nContent-Length: %zu\r\nUser-Agent: orderservice\r\n%.*s\r\n",
                     method, (int)parsed.path.len, parsed.path.base, (int)parsed.authority.len, parsed.authority.base,
                     body_len, (int)headers_len, headers);
    memcpy(call->request.base + n, body, body_len);
    call->request.len = (size_t)n + body_len;
    call->host = h2o_strdup(NULL, parsed.host.base, parsed.host.len);
    call->port = h2o_url_get_port(&parsed);
    task->ext[OS_TASK_EXT_HTTP] = &call->ext;

    os_http_pools_t *pools = task->worker->http;
    h2o_socketpool_t *pool = pool_for(pools, parsed.host, call->port);
    os_op_begin(task, &call->op, OS_OP_HTTP, cancel_call);
    os_timer_start(&task->worker->timers, &call->deadline, (uint64_t)os_config.downstream_timeout_ms);
    call->connecting = 1;
    h2o_http1client_connect_with_pool(&call->client, call, &pools->ctx, pool, on_connect);
    call->connecting = 0;
    return OS_OK;
}

int os_http_status(os_task_t *task)
{
    http_call_t *call = (http_call_t *)task->ext[OS_TASK_EXT_HTTP];
    return call != NULL ? call->status : 0;
}

const char *os_http_body(os_task_t *task, size_t *len)
{
    http_call_t *call = (http_call_t *)task->ext[OS_TASK_EXT_HTTP];
    if (call == NULL || call->body == NULL) {
        *len = 0;
        return "";
    }
    *len = call->body_len;
    return call->body;
}

int os_http_maybe_sent(os_task_t *task)
{
    http_call_t *call = (http_call_t *)task->ext[OS_TASK_EXT_HTTP];
    return call != NULL && call->maybe_sent;
}
