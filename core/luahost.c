/*
 * luahost.c - owns each worker's LuaJIT VM and the life of request tasks.
 *
 * A request becomes a task: a coroutine on the worker's current VM running the Lua
 * dispatcher (scripts/lib/host.lua) with the task's address, the method, the path and its
 * arrival time. The rest of the request Lua reads through os_request_* when it needs it, and
 * the response's headers it adds through os_response_header; the dispatcher returns status,
 * body and the route's name.
 * While the coroutine waits on an operation the request stays open; h2o may dispose the
 * request meanwhile (client gone), which a pool-shared guard reports by clearing task->req.
 *
 * VMs are reference-counted by their tasks, so that a reload can install a new generation
 * for new requests while the old one finishes the requests it is running. This file also keeps
 * which older generations are still draining (any worker's VM released with tasks running) and
 * publishes their count as a gauge (metrics.h); reload.c decides which generation a worker
 * serves and moves it there before a request reaches this file's handler (os_reload_register).
 *
 * What a task waits on, and the state the database and HTTP client keep per task, belong to
 * task.c and to those subsystems: freeing a task here only calls os_task_dispose().
 */
#include "luahost.h"
#include "config.h"
#include "ffi.h"
#include "log.h"
#include "metrics.h"
#include "task.h"

#include <assert.h>
#include <errno.h>
#include <lauxlib.h>
#include <malloc.h>
#include <lualib.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* How often a waiting GET or HEAD whose connection watch_client cannot watch looks whether its
 * client has closed it. */
#define CLIENT_GONE_CHECK_MS 250
/* Coroutines that returned are kept for the next tasks, up to this many per VM: a request
 * then allocates no Lua thread and its stack, and the GC has fewer objects to collect. */
#define IDLE_COROUTINES_MAX 64
/* The methods whose strings each VM keeps (see push_request); the last path is kept too when
 * it is at most PATH_KEPT_MAX bytes. */
static const char *const kept_methods[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
#define KEPT_METHODS (sizeof(kept_methods) / sizeof(kept_methods[0]))
#define PATH_KEPT_MAX 128
#define RESPONSE_HEADERS_RESERVED 8

struct os_vm {
    lua_State *L;
    int dispatch_ref;
    int background_ref;
    int spawn_ref; /* host.lua's spawned(task_ptr, id): runs a function async.spawn queued */
    size_t refs; /* the worker's reference plus one per running task */
    uint64_t generation;
    int draining; /* released by its worker while tasks still ran on it */
    int idle_refs[IDLE_COROUTINES_MAX]; /* registry refs of coroutines that returned, to reuse */
    size_t nidle;
    int method_refs[KEPT_METHODS]; /* registry refs of kept_methods' strings */
    int path_ref;                  /* registry ref of the last path's string, or LUA_NOREF */
    size_t path_len;
    char path[PATH_KEPT_MAX];
};

/* A Lua task: the generic task (its waits, see task.h) plus the coroutine and its request. */
typedef struct lua_task {
    os_task_t base;
    os_vm_t *vm;
    lua_State *co;
    int co_ref;
    h2o_req_t *req; /* NULL once the client has gone away */
    void *guard;    /* lives in req->pool; clears req when h2o disposes it */
    int background; /* a job runner or a task it spawned, not a request: counted in jobs_running */
    int returned;   /* its coroutine returned (not failed, not suspended): it can run another task */
    int abandonable; /* a GET or HEAD: when its client goes away, its waits are cancelled */
    os_timer_t gone_timer; /* an abandonable request's check for a client that closed its connection */
    uint64_t started_us;
} lua_task_t;

typedef struct req_guard {
    lua_task_t *task;
    h2o_socket_t *watched; /* the client's socket, from watch_client until the request is disposed */
    h2o_linklist_t link;   /* in watching, while watched */
} req_guard_t;

/* The guards of this worker's requests whose client socket watch_client has. */
static __thread h2o_linklist_t watching;

/* Old generations with VMs still running tasks, across the workers: generation -> VMs (one per
 * worker at most). `draining_lock` guards the table; it is held for a few loads and stores. */
typedef struct draining {
    uint64_t generation;
    size_t vms;
} draining_t;
static pthread_mutex_t draining_lock = PTHREAD_MUTEX_INITIALIZER;
static draining_t *draining;
static size_t ndraining, draining_cap;

/* Counts a VM of generation that was retired with tasks still running (+1) or has finished them (-1). */
static void note_draining(uint64_t generation, int delta)
{
    pthread_mutex_lock(&draining_lock);
    size_t i = 0;
    while (i < ndraining && draining[i].generation != generation)
        i++;
    if (delta > 0) {
        if (i == ndraining && ndraining == draining_cap) {
            size_t cap = draining_cap ? 2 * draining_cap : 8;
            draining_t *grown = realloc(draining, cap * sizeof(*grown));
            if (grown == NULL) { /* the gauge undercounts; nothing else depends on it */
                pthread_mutex_unlock(&draining_lock);
                return;
            }
            draining = grown;
            draining_cap = cap;
        }
        if (i == ndraining)
            draining[ndraining++] = (draining_t){generation, 0};
        draining[i].vms++;
    } else if (i < ndraining && --draining[i].vms == 0) {
        draining[i] = draining[--ndraining];
    }
    os_metrics_set_script_generations_draining(ndraining); /* under the lock: published in order */
    pthread_mutex_unlock(&draining_lock);
}

static void vm_unref(os_vm_t *vm)
{
    if (--vm->refs == 0) {
        if (vm->draining)
            note_draining(vm->generation, -1);
        lua_close(vm->L);
        free(vm);
        /* A closed VM's megabytes sit between longer-lived allocations (libpq's buffers) that
         * keep glibc from returning them; give them back now rather than at the next outage. */
        malloc_trim(0);
    }
}

void os_vm_release(os_vm_t *vm)
{
    if (vm->refs > 1) {
        vm->draining = 1;
        note_draining(vm->generation, 1);
    }
    vm_unref(vm);
}

size_t os_vm_memory_bytes(os_vm_t *vm)
{
    if (vm == NULL)
        return 0;
    return (size_t)lua_gc(vm->L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(vm->L, LUA_GCCOUNTB, 0);
}

static int traceback(lua_State *L)
{
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
    return 1;
}

lua_State *os_lua_state_new(void)
{
    lua_State *L = luaL_newstate();
    if (L == NULL)
        return NULL;
    luaL_openlibs(L);
    /* package.path = SCRIPTS_DIR/?.lua;SCRIPTS_DIR/?/init.lua;<default> */
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", os_config.scripts_dir, os_config.scripts_dir);
    lua_getfield(L, -2, "path");
    lua_concat(L, 2);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    return L;
}

os_vm_t *os_vm_create(os_worker_t *worker, uint64_t generation, char *err, size_t errlen)
{
    lua_State *L = os_lua_state_new();
    if (L == NULL) {
        snprintf(err, errlen, "cannot create a Lua state");
        return NULL;
    }

    lua_pushcfunction(L, traceback);
    lua_getglobal(L, "require");
    lua_pushstring(L, "lib.host");
    if (lua_pcall(L, 1, 1, -3) != 0)
        goto Fail;
    lua_getfield(L, -1, "init");
    lua_createtable(L, 0, 4);
    lua_pushstring(L, os_config.routes_file);
    lua_setfield(L, -2, "routes_file");
    lua_pushinteger(L, worker->id);
    lua_setfield(L, -2, "worker_id");
    lua_pushinteger(L, (lua_Integer)os_config.tax_ppm);
    lua_setfield(L, -2, "tax_ppm");
    lua_pushinteger(L, (lua_Integer)os_config.shipping_cents);
    lua_setfield(L, -2, "shipping_cents");
    os_config_push_lua(L, &os_config); /* every setting, for lib.config */
    lua_setfield(L, -2, "settings");
    if (lua_pcall(L, 1, 1, -4) != 0)
        goto Fail;
    if (!lua_isfunction(L, -1)) {
        snprintf(err, errlen, "lib.host.init must return the dispatch function");
        lua_close(L);
        return NULL;
    }
    os_vm_t *vm = calloc(1, sizeof(*vm));
    vm->L = L;
    vm->dispatch_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, "background");
    vm->background_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, "spawned");
    vm->spawn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    vm->refs = 1;
    vm->generation = generation;
    for (size_t i = 0; i != KEPT_METHODS; i++) {
        lua_pushstring(L, kept_methods[i]);
        vm->method_refs[i] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    vm->path_ref = LUA_NOREF;
    lua_settop(L, 0);
    return vm;

Fail:
    snprintf(err, errlen, "%s", lua_tostring(L, -1));
    lua_close(L);
    return NULL;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 499: return "Client Closed Request"; /* nginx's: the client went away (never reaches it) */
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

/* h2o 2.2's HTTP/1 stops reading a connection while its request is handled (it reads the next
 * request only after answering), so a client that closes its connection would be noticed only
 * when the answer is written: the request is not disposed, and on_req_disposed cannot see it.
 * So a GET or HEAD that waits watches its connection (watch_client): the socket stays polled for
 * reading, as between requests, in h2o's "don't read" mode, so that readiness is only reported:
 * the bytes stay in the kernel for HTTP/1. That also spares the loop taking the socket out of
 * its poll set and putting it back for every request that waits (two epoll_ctl calls), since
 * HTTP/1 starts reading again, after the answer, in the same turn of the loop as the request is
 * disposed. A peek that finds the end of the stream, or an error, means the client is gone (a
 * client that only shuts its sending side counts as gone, as in nginx); bytes of a next request
 * stop the watch (a readable socket would wake the loop again and again), and the periodic look
 * (on_gone_timer) takes over. */
static void unwatch_client(req_guard_t *guard)
{
    if (guard->watched == NULL)
        return;
    h2o_socket_dont_read(guard->watched, 0);
    h2o_linklist_unlink(&guard->link);
    guard->watched = NULL;
}

static void on_client_readable(h2o_socket_t *sock, const char *err)
{
    char byte;
    ssize_t n = err != NULL ? -1 : recv(h2o_socket_get_fd(sock), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (err == NULL && n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return; /* nothing to read after all */
    h2o_socket_read_stop(sock);
    req_guard_t *guard = NULL;
    for (h2o_linklist_t *node = watching.next; node != &watching && guard == NULL; node = node->next)
        if (H2O_STRUCT_FROM_MEMBER(req_guard_t, link, node)->watched == sock)
            guard = H2O_STRUCT_FROM_MEMBER(req_guard_t, link, node);
    lua_task_t *task = guard != NULL ? guard->task : NULL;
    if (task == NULL || task->base.op == NULL)
        return; /* answered already: HTTP/1 reads what came after the answer */
    if (n <= 0)
        os_task_cancel(&task->base);
    else if (!os_timer_is_active(&task->gone_timer))
        os_timer_start(&task->base.worker->timers, &task->gone_timer, CLIENT_GONE_CHECK_MS);
}

/* Watches a waiting GET or HEAD's client; returns 0 when its connection is not watched (HTTP/2
 * keeps reading its connection, TLS reads through its own buffer, and a watch that bytes of a
 * next request stopped is over). */
static int watch_client(lua_task_t *task)
{
    req_guard_t *guard = task->guard;
    h2o_req_t *req = task->req;
    if (guard->watched != NULL)
        return h2o_socket_is_reading(guard->watched);
    h2o_socket_t *sock = req->conn->callbacks->get_socket != NULL ? req->conn->callbacks->get_socket(req->conn) : NULL;
    if (sock == NULL || req->version >= 0x200 || sock->ssl != NULL || h2o_socket_is_reading(sock))
        return 0;
    if (watching.next == NULL)
        h2o_linklist_init_anchor(&watching);
    guard->watched = sock;
    h2o_linklist_insert(&watching, &guard->link);
    h2o_socket_dont_read(sock, 1);
    h2o_socket_read_start(sock, on_client_readable);
    return 1;
}

/* h2o disposes the request: at its end, or earlier when the client went away. A safe method
 * (GET, HEAD: RFC 9110 9.2.1, nothing it does changes state) still running has nobody to
 * answer, so its wait is cancelled (a query stopped on the server, a call or sleep dropped) and
 * its coroutine unwinds (OS_ECANCELED). Any other method keeps going to its end: a create's
 * saga must not stop halfway because its client did. */
static void on_req_disposed(void *p)
{
    req_guard_t *guard = p;
    unwatch_client(guard); /* before HTTP/1 starts reading the connection's next request */
    lua_task_t *task = guard->task;
    if (task == NULL)
        return;
    task->req = NULL;
    if (task->abandonable)
        os_task_cancel(&task->base);
}

/* A waiting GET or HEAD whose connection watch_client does not watch looks at it every
 * CLIENT_GONE_CHECK_MS instead, the way nginx does: a peek (the bytes stay for h2o) that finds
 * the end of the stream, or an error, means the client is gone. */
static void on_gone_timer(os_timer_t *timer)
{
    lua_task_t *task = H2O_STRUCT_FROM_MEMBER(lua_task_t, gone_timer, timer);
    h2o_req_t *req = task->req;
    if (req == NULL || task->base.cancelled)
        return;
    h2o_socket_t *sock = req->conn->callbacks->get_socket != NULL ? req->conn->callbacks->get_socket(req->conn) : NULL;
    int fd = sock != NULL ? h2o_socket_get_fd(sock) : -1;
    if (fd >= 0) {
        char byte;
        ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            os_task_cancel(&task->base);
            return;
        }
    }
    os_timer_start(&task->base.worker->timers, &task->gone_timer, CLIENT_GONE_CHECK_MS);
}

static void send_response(lua_task_t *task, int status, const char *body, size_t len, const char *route)
{
    h2o_req_t *req = task->req;
    if (task->background)
        return;
    os_metrics_observe_http(task->base.worker->metrics, route, req != NULL ? req->method.base : "GET",
                            req != NULL ? req->method.len : 3, status, os_clock_us() - task->started_us);
    if (req == NULL)
        return;
    req->res.status = status;
    req->res.reason = reason_phrase(status);
    req->res.content_length = len; /* lets h2o keep the connection alive for every status */
    h2o_send_inline(req, body, len);
}

static void send_internal_error(lua_task_t *task, const char *what)
{
    static const char body[] = "{\"error\": \"internal error\"}";
    os_log(OS_LOG_ERROR, "request failed in the Lua host: %s", what);
    if (task->req != NULL) {
        /* Whatever headers the dispatcher added before it failed belong to another answer. */
        task->req->res.headers = (h2o_headers_t){NULL, 0, 0};
        h2o_add_header(&task->req->pool, &task->req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                       H2O_STRLIT("application/json"));
    }
    send_response(task, 500, body, sizeof(body) - 1, "unmatched");
}

/* Sends the dispatcher's results (status, body, route): its headers are in the response already. */
static void finish(lua_task_t *task)
{
    lua_State *co = task->co;
    int status = (int)lua_tointeger(co, 1);
    size_t len = 0;
    const char *body = lua_tolstring(co, 2, &len);
    const char *route = lua_tostring(co, 3);
    if (task->background) /* a job runner or a task it spawned: nobody to answer */
        return;
    if (status < 100 || status > 599 || body == NULL) {
        send_internal_error(task, "dispatcher returned no status or body");
        return;
    }
    send_response(task, status, body, len, route != NULL ? route : "unmatched");
}

static void task_free(lua_task_t *task)
{
    os_vm_t *vm = task->vm;
    os_timer_stop(&task->base.worker->timers, &task->gone_timer);
    os_task_dispose(&task->base);
    if (task->guard != NULL)
        ((req_guard_t *)task->guard)->task = NULL;
    if (task->returned && vm->nidle < IDLE_COROUTINES_MAX) {
        lua_settop(task->co, 0);
        vm->idle_refs[vm->nidle++] = task->co_ref;
    } else {
        luaL_unref(vm->L, LUA_REGISTRYINDEX, task->co_ref);
    }
    if (!task->background)
        task->base.worker->tasks_running--;
    else
        task->base.worker->jobs_running--;
    free(task);
    vm_unref(vm);
}

/* Runs the coroutine until it yields on an operation or finishes, then answers and frees. */
static void task_step(lua_task_t *task, int nargs)
{
    os_worker_t *worker = task->base.worker;
    assert(task->base.op == NULL && "a task runs only when it waits on nothing");
    worker->in_lua++;
    int rc = lua_resume(task->co, nargs);
    worker->in_lua--;
    if (rc == LUA_YIELD) {
        if (task->base.op != NULL) {
            /* A GET or HEAD that waits: watch its client (the timer is armed once; it re-arms itself). */
            if (task->abandonable && task->req != NULL && !watch_client(task) &&
                !os_timer_is_active(&task->gone_timer))
                os_timer_start(&worker->timers, &task->gone_timer, CLIENT_GONE_CHECK_MS);
            return;
        }
        send_internal_error(task, "handler yielded outside an asynchronous operation");
    } else if (rc == 0) {
        task->returned = 1;
        finish(task);
    } else {
        send_internal_error(task, lua_tostring(task->co, -1));
    }
    task_free(task);
}

/* The resume callback task.c calls when the operation the task waited on completes. */
static void task_resume(os_task_t *base, int status)
{
    lua_task_t *task = H2O_STRUCT_FROM_MEMBER(lua_task_t, base, base);
    lua_pushinteger(task->co, status);
    task_step(task, 1);
}

int os_task_retired(os_task_t *base)
{
    lua_task_t *task = H2O_STRUCT_FROM_MEMBER(lua_task_t, base, base);
    return base->worker->stop_deadline_ms != 0 || task->vm != base->worker->vm;
}

/* The numeric form of an IPv4 peer without getnameinfo's printf (the per-request case); other
 * families through h2o. Returns the length written to host, or SIZE_MAX. */
static size_t numeric_host(struct sockaddr *sa, socklen_t len, char *host)
{
    if (sa->sa_family != AF_INET)
        return h2o_socket_getnumerichost(sa, len, host);
    const uint8_t *b = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    size_t n = 0;
    for (int i = 0; i < 4; i++) {
        if (b[i] >= 100)
            host[n++] = (char)('0' + b[i] / 100);
        if (b[i] >= 10)
            host[n++] = (char)('0' + b[i] / 10 % 10);
        host[n++] = (char)('0' + b[i] % 10);
        host[n++] = '.';
    }
    return n - 1;
}

/* The dispatcher's arguments after the task: the method and the path without its query. The
 * rest of the request Lua reads when it asks (os_request_*): most requests never look at most
 * headers, and each value pushed here would be a string to intern and a table slot to fill.
 * Interning is a lookup in the VM's string table that mostly misses the CPU's caches, so the
 * common methods' strings and the last path's are kept in the registry: a client repeating
 * its request (a health check, a hot endpoint) interns nothing here. */
static void push_request(os_vm_t *vm, lua_State *co, h2o_req_t *req)
{
    size_t i = 0;
    while (i != KEPT_METHODS && !h2o_memis(req->method.base, req->method.len, kept_methods[i], strlen(kept_methods[i])))
        i++;
    if (i != KEPT_METHODS)
        lua_rawgeti(co, LUA_REGISTRYINDEX, vm->method_refs[i]);
    else
        lua_pushlstring(co, req->method.base, req->method.len);

    size_t path_len = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    if (vm->path_ref != LUA_NOREF && h2o_memis(req->path.base, path_len, vm->path, vm->path_len)) {
        lua_rawgeti(co, LUA_REGISTRYINDEX, vm->path_ref);
        return;
    }
    lua_pushlstring(co, req->path.base, path_len);
    if (path_len <= PATH_KEPT_MAX) {
        luaL_unref(co, LUA_REGISTRYINDEX, vm->path_ref);
        lua_pushvalue(co, -1);
        vm->path_ref = luaL_ref(co, LUA_REGISTRYINDEX);
        memcpy(vm->path, req->path.base, path_len);
        vm->path_len = path_len;
    }
}

/* The request task answers, or NULL: the client has gone, or the task is a background one. */
static h2o_req_t *task_req(os_task_t *base)
{
    return base != NULL ? H2O_STRUCT_FROM_MEMBER(lua_task_t, base, base)->req : NULL;
}

int os_request_header(os_task_t *task, const char *name, size_t name_len, const char **value, size_t *value_len)
{
    h2o_req_t *req = task_req(task);
    if (req == NULL)
        return OS_ERR;
    /* h2o keeps the names lower-cased; a name longer than any real one is absent anyway. */
    char lname[256];
    if (name_len > sizeof(lname))
        return 0;
    for (size_t i = 0; i != name_len; i++)
        lname[i] = h2o_tolower(name[i]);
    ssize_t at = h2o_find_header_by_str(&req->headers, lname, name_len, -1);
    if (at == -1)
        return 0;
    h2o_iovec_t v = req->headers.entries[at].value;
    ssize_t next = h2o_find_header_by_str(&req->headers, lname, name_len, at);
    if (next != -1) {
        /* Repeated: joined with ", " (RFC 9110 5.3), in the request's pool. */
        size_t len = v.len;
        for (ssize_t i = next; i != -1; i = h2o_find_header_by_str(&req->headers, lname, name_len, i))
            len += 2 + req->headers.entries[i].value.len;
        char *joined = h2o_mem_alloc_pool(&req->pool, len);
        memcpy(joined, v.base, v.len);
        size_t off = v.len;
        for (ssize_t i = next; i != -1; i = h2o_find_header_by_str(&req->headers, lname, name_len, i)) {
            const h2o_iovec_t *more = &req->headers.entries[i].value;
            memcpy(joined + off, ", ", 2);
            memcpy(joined + off + 2, more->base, more->len);
            off += 2 + more->len;
        }
        v = h2o_iovec_init(joined, len);
    }
    *value = v.base;
    *value_len = v.len;
    return 1;
}

int os_request_header_at(os_task_t *task, size_t index, const char **name, size_t *name_len, const char **value,
                         size_t *value_len)
{
    h2o_req_t *req = task_req(task);
    if (req == NULL)
        return OS_ERR;
    if (index >= req->headers.size)
        return 0;
    const h2o_header_t *h = req->headers.entries + index;
    *name = h->name->base;
    *name_len = h->name->len;
    *value = h->value.base;
    *value_len = h->value.len;
    return 1;
}

int os_request_part(os_task_t *task, int part, const char **value, size_t *value_len)
{
    h2o_req_t *req = task_req(task);
    if (req == NULL)
        return OS_ERR;
    switch (part) {
    case OS_REQUEST_QUERY:
        if (req->query_at == SIZE_MAX)
            return 0;
        *value = req->path.base + req->query_at + 1;
        *value_len = req->path.len - req->query_at - 1;
        return 1;
    case OS_REQUEST_BODY:
        *value = req->entity.base != NULL ? req->entity.base : "";
        *value_len = req->entity.len;
        return 1;
    case OS_REQUEST_PEER: {
        /* The peer's numeric address, for the filters keyed by client (rate_limit, ip_allow). */
        struct sockaddr_storage peer;
        char host[NI_MAXHOST];
        socklen_t peer_len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&peer);
        size_t host_len = peer_len != 0 ? numeric_host((struct sockaddr *)&peer, peer_len, host) : SIZE_MAX;
        if (host_len == SIZE_MAX)
            return 0;
        h2o_iovec_t copy = h2o_strdup(&req->pool, host, host_len);
        *value = copy.base;
        *value_len = copy.len;
        return 1;
    }
    default:
        return OS_ERR;
    }
}

/* Whether s[0..len) holds an ASCII capital, eight bytes a step: of each byte below 0x80, h + 0x3f
 * reaches bit 7 from 'A' on and h + 0x25 from 'Z' + 1 on, so their XOR marks 'A'..'Z'. */
static int has_upper(const char *s, size_t len)
{
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t x;
        memcpy(&x, s + i, 8);
        uint64_t h = x & 0x7f7f7f7f7f7f7f7fULL;
        if (((h + 0x3f3f3f3f3f3f3f3fULL) ^ (h + 0x2525252525252525ULL)) & ~x & 0x8080808080808080ULL)
            return 1;
    }
    for (; i < len; i++)
        if (s[i] >= 'A' && s[i] <= 'Z')
            return 1;
    return 0;
}

int os_response_header(os_task_t *task, const char *name, size_t name_len, const char *value, size_t value_len)
{
    h2o_req_t *req = task_req(task);
    if (req == NULL)
        return OS_ERR;
    /* Room for a usual response's headers at once (content-type, the request id, a few
     * security headers), not four growing copies. */
    if (req->res.headers.capacity == 0)
        h2o_vector_reserve(&req->pool, &req->res.headers, RESPONSE_HEADERS_RESERVED);
    h2o_iovec_t v = h2o_strdup(&req->pool, value, value_len);
    /* Scripts spell nearly every name in lower case already: then it is looked up as it is,
     * and a name h2o knows (a token) costs no copy. */
    char *copy = NULL;
    if (has_upper(name, name_len)) {
        copy = h2o_strdup(&req->pool, name, name_len).base;
        h2o_strtolower(copy, name_len);
    }
    const h2o_token_t *token = h2o_lookup_token(copy != NULL ? copy : name, name_len);
    if (token != NULL) {
        h2o_add_header(&req->pool, &req->res.headers, token, NULL, v.base, v.len);
        return OS_OK;
    }
    if (copy == NULL)
        copy = h2o_strdup(&req->pool, name, name_len).base;
    h2o_add_header_by_str(&req->pool, &req->res.headers, copy, name_len, 0, NULL, v.base, v.len);
    return OS_OK;
}

/* A task on vm whose coroutine will call the function at fn_ref with the task as its first
 * argument; resume is how its waits end. */
static lua_task_t *task_new(os_worker_t *worker, os_vm_t *vm, int fn_ref, os_task_resume_cb resume)
{
    lua_task_t *task = calloc(1, sizeof(*task));
    if (task == NULL)
        return NULL;
    os_task_init(&task->base, worker, resume);
    os_timer_init(&task->gone_timer, on_gone_timer);
    task->vm = vm;
    task->started_us = os_clock_us();
    vm->refs++;
    if (vm->nidle > 0) {
        /* A returned coroutine starts afresh on its next resume (status LUA_OK, empty stack). */
        task->co_ref = vm->idle_refs[--vm->nidle];
        lua_rawgeti(vm->L, LUA_REGISTRYINDEX, task->co_ref);
        task->co = lua_tothread(vm->L, -1);
        lua_pop(vm->L, 1);
    } else {
        task->co = lua_newthread(vm->L);
        task->co_ref = luaL_ref(vm->L, LUA_REGISTRYINDEX);
    }
    lua_rawgeti(task->co, LUA_REGISTRYINDEX, fn_ref);
    /* The task's address as a number, which the JIT casts to os_task_t * (from a light userdata
     * it cannot); exact, since user-space addresses stay far below 2^53. */
    lua_pushnumber(task->co, (lua_Number)(uintptr_t)&task->base);
    return task;
}

/* A task on the worker's current VM whose coroutine will call the function at fn_ref. */
static lua_task_t *task_create(os_worker_t *worker, int fn_ref)
{
    return task_new(worker, worker->vm, fn_ref, task_resume);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    os_worker_t *worker = H2O_STRUCT_FROM_MEMBER(os_worker_t, ctx, req->conn->ctx);
    /* worker->vm is the live generation's: reload.c's handler, registered ahead, moved it there. */
    lua_task_t *task = task_create(worker, worker->vm->dispatch_ref);
    if (task == NULL)
        return -1;
    task->req = req;
    task->abandonable = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
                        h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    req_guard_t *guard = h2o_mem_alloc_shared(&req->pool, sizeof(*guard), on_req_disposed);
    guard->task = task;
    guard->watched = NULL;
    guard->link = (h2o_linklist_t){NULL, NULL}; /* h2o's pool memory is not zeroed */
    task->guard = guard;
    worker->tasks_running++;
    push_request(task->vm, task->co, req);
    /* Its arrival on os_monotonic_ms's clock: the access log's duration starts there. */
    lua_pushnumber(task->co, (lua_Number)(task->started_us / 1000u));
    task_step(task, 4);
    return 0;
}

/* A spawned task's first step: the loop runs it (its parent is running Lua when it spawns,
 * and a coroutine cannot be resumed from inside an FFI call). The stack holds the runner,
 * the task pointer and the id: no status is pushed for this first resume. */
static void spawn_start(os_task_t *base, int status)
{
    (void)status;
    lua_task_t *task = H2O_STRUCT_FROM_MEMBER(lua_task_t, base, base);
    base->resume = task_resume;
    task_step(task, 2);
}

int os_task_spawn(os_task_t *parent_base, int64_t id)
{
    lua_task_t *parent = H2O_STRUCT_FROM_MEMBER(lua_task_t, base, parent_base);
    os_worker_t *worker = parent_base->worker;
    os_vm_t *vm = parent->vm;
    /* On the parent's VM (not necessarily the worker's current one after a reload): the
     * function it runs lives there. */
    lua_task_t *task = task_new(worker, vm, vm->spawn_ref, spawn_start);
    if (task == NULL) {
        os_task_set_error(parent_base, "out of memory");
        return OS_ERR;
    }
    lua_pushnumber(task->co, (lua_Number)id);
    task->background = 1;
    worker->jobs_running++; /* a drain waits for it like for the job runner that spawned it */
    /* Started by the loop through the task's deferred-resume operation (task.c), so that
     * disposing the task before it starts cancels the start like any other wait. */
    os_op_t *op = &task->base.resume_op;
    os_op_begin(&task->base, op, OS_OP_RESUME, op->cancel);
    task->base.resume_status = OS_OK;
    if (os_timer_start(&worker->timers, &task->base.resume_timer, 0) != 0) {
        task_free(task); /* cancels the op it never armed: stopping an idle timer is harmless */
        os_task_set_error(parent_base, "out of memory");
        return OS_ERR;
    }
    return OS_OK;
}

void os_luahost_start_background(os_worker_t *worker)
{
    lua_task_t *task = task_create(worker, worker->vm->background_ref);
    if (task == NULL)
        return;
    task->background = 1;
    worker->jobs_running++; /* the drain waits for the runner to finish the row it is on */
    task_step(task, 1);
}

void os_luahost_register(h2o_pathconf_t *pathconf)
{
    h2o_handler_t *handler = h2o_create_handler(pathconf, sizeof(*handler));
    handler->on_req = on_req;
}
