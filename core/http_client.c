/*
 * http_client.c - owns downstream HTTP calls (DOWNSTREAM_TIMEOUT_MS, DOWNSTREAM_POOL_SIZE).
 *
 * Built on h2o's http1client: each worker keeps one h2o socket pool per host:port, so calls
 * reuse keep-alive connections, and host names are resolved by h2o's resolver threads, never
 * on the worker. A call is one request buffer written at once and a response body gathered
 * up to MAX_BODY bytes. Besides h2o's per-I/O timeout, a whole-call deadline on the task's
 * timer cancels a call that trickles. The outcome reaches Lua as a status (2xx..5xx) or as
 * OS_EUNAVAILABLE / OS_ETIMEDOUT for calls that got no answer.
 */
#include "http_client.h"
#include "config.h"
#include "ffi.h"
#include "log.h"

#include <h2o/http1client.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BODY (1024 * 1024)
#define IDLE_KEEPALIVE_MS 2000

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

typedef struct os_http_call {
    os_task_t *task;
    h2o_http1client_t *client;
    h2o_iovec_t request;
    int status;
    char *body;
    size_t body_len;
} os_http_call_t;

os_http_pools_t *os_http_pools_create(os_worker_t *worker)
{
    os_http_pools_t *pools = calloc(1, sizeof(*pools));
    pools->worker = worker;
    h2o_timeout_init(worker->ctx.loop, &pools->io_timeout, (uint64_t)os_config.downstream_timeout_ms);
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

static void call_free(os_http_call_t *call)
{
    free(call->request.base);
    free(call->body);
    free(call);
}

/* Ends the call: the client is gone (finished, failed or cancelled); resume the task. */
static void call_finish(os_http_call_t *call, int status, const char *error)
{
    os_task_t *task = call->task;
    call->client = NULL;
    os_timer_stop(&task->worker->timers, &task->timer);
    if (error != NULL)
        os_task_set_error(task, "%s", error);
    os_task_resume(task, status);
}

static int on_body(h2o_http1client_t *client, const char *errstr)
{
    os_http_call_t *call = client->data;
    h2o_buffer_t *input = client->sock->input;
    if (errstr != NULL && errstr != h2o_http1client_error_is_eos) {
        call_finish(call, OS_EUNAVAILABLE, errstr);
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

static h2o_http1client_body_cb on_head(h2o_http1client_t *client, const char *errstr, int minor_version, int status,
                                       h2o_iovec_t msg, h2o_header_t *headers, size_t num_headers, int rlen)
{
    os_http_call_t *call = client->data;
    (void)minor_version, (void)msg, (void)headers, (void)num_headers, (void)rlen;
    if (errstr != NULL && errstr != h2o_http1client_error_is_eos) {
        call_finish(call, OS_EUNAVAILABLE, errstr);
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
    os_http_call_t *call = client->data;
    if (errstr != NULL) {
        call_finish(call, OS_EUNAVAILABLE, errstr);
        return NULL;
    }
    *reqbufs = &call->request;
    *reqbufcnt = 1;
    *method_is_head = 0;
    return on_head;
}

static void on_deadline(os_timer_t *timer)
{
    os_task_t *task = H2O_STRUCT_FROM_MEMBER(os_task_t, timer, timer);
    os_http_call_t *call = task->http;
    if (call->client != NULL)
        h2o_http1client_cancel(call->client);
    call->client = NULL;
    os_task_set_error(task, "no answer within %d ms", os_config.downstream_timeout_ms);
    os_task_resume(task, OS_ETIMEDOUT);
}

void os_http_task_done(os_task_t *task)
{
    if (task->http == NULL)
        return;
    if (task->http->client != NULL)
        h2o_http1client_cancel(task->http->client);
    call_free(task->http);
    task->http = NULL;
}

int os_http_request(os_task_t *task, const char *method, const char *url, size_t url_len, const char *headers,
                    size_t headers_len, const char *body, size_t body_len)
{
    h2o_url_t parsed;
    if (task->wait != OS_WAIT_NONE) {
        os_task_set_error(task, "task is already waiting");
        return OS_ESTATE;
    }
    if (h2o_url_parse(url, url_len, &parsed) != 0 || parsed.scheme != &H2O_URL_SCHEME_HTTP) {
        os_task_set_error(task, "bad URL (only http:// is supported): %.*s", (int)(url_len < 200 ? url_len : 200), url);
        return OS_ERR;
    }
    os_http_task_done(task);
    os_http_call_t *call = calloc(1, sizeof(*call));
    call->task = task;
    size_t cap = strlen(method) + parsed.path.len + parsed.authority.len + headers_len + 128 + body_len;
    call->request.base = malloc(cap);
    int n = snprintf(call->request.base, cap,
                     "%s %.*s HTTP/1.1\r\nHost: %.*s\r\nContent-Length: %zu\r\nUser-Agent: orderservice\r\n%.*s\r\n",
                     method, (int)parsed.path.len, parsed.path.base, (int)parsed.authority.len, parsed.authority.base,
                     body_len, (int)headers_len, headers);
    memcpy(call->request.base + n, body, body_len);
    call->request.len = (size_t)n + body_len;
    task->http = call;

    os_http_pools_t *pools = task->worker->http;
    h2o_socketpool_t *pool = pool_for(pools, parsed.host, h2o_url_get_port(&parsed));
    task->wait = OS_WAIT_HTTP;
    task->timer.cb = on_deadline;
    os_timer_start(&task->worker->timers, &task->timer, (uint64_t)os_config.downstream_timeout_ms);
    h2o_http1client_connect_with_pool(&call->client, call, &pools->ctx, pool, on_connect);
    return OS_OK;
}

int os_http_status(os_task_t *task)
{
    return task->http != NULL ? task->http->status : 0;
}

const char *os_http_body(os_task_t *task, size_t *len)
{
    if (task->http == NULL || task->http->body == NULL) {
        *len = 0;
        return "";
    }
    *len = task->http->body_len;
    return task->http->body;
}
