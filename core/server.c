/*
 * server.c - owns the listening sockets, the worker threads and the shutdown (WORKERS, HOST,
 * PORT, SHUTDOWN_READY_DELAY_MS, SHUTDOWN_TIMEOUT_MS).
 *
 * Each worker has its own listening socket on the same address (SO_REUSEPORT), so the
 * kernel spreads connections over the workers and no accept lock is needed. Sockets are
 * bound by the main thread before any worker starts, so "address in use" is reported
 * once and synchronously: exit status 1 when another process holds the address. The main thread then waits for signals: SIGHUP reloads the
 * scripts (see reload.c); SIGTERM/SIGINT stop the server.
 *
 * Stopping, in this order, so that a rolling restart fails no request:
 *  1. SIGTERM: readiness (/health/) answers 503 "shutting down" at once, while everything else
 *     is served as before for SHUTDOWN_READY_DELAY_MS, the time a load balancer (Kubernetes'
 *     endpoints) needs to stop sending new connections here. SIGINT (Ctrl-C) skips the wait.
 *  2. Every worker closes its listener (new connections are refused by the kernel), answers
 *     every further request with Connection: close, and closes connections idle for over
 *     DRAIN_IDLE_MS (a kept-alive connection nobody uses would otherwise hold the drain).
 *  3. A worker leaves its loop once it runs no request, its background job runner has returned
 *     (the jobs stop taking new work and finish the row they are on; a saga step in flight
 *     completes or is left whole for recovery) and no client connection is open, or at
 *     SHUTDOWN_TIMEOUT_MS after step 2. Exit status 0.
 */
#include "server.h"
#include "config.h"
#include "db.h"
#include "framing.h"
#include "http_client.h"
#include "log.h"
#include "luahost.h"
#include "metrics.h"
#include "reload.h"
#include "replica.h"
#include "static.h"
#include "worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_REQUEST_BODY (1024 * 1024)
#define TICK_MS 100
/* While draining, a kept-alive connection idle this long is closed (h2o's default is 10 s). */
#define DRAIN_IDLE_MS 1000

static h2o_globalconf_t globalconf;
static atomic_int draining; /* readiness is false: set by SIGTERM, before stopping */
static atomic_int stopping; /* the workers close their listeners and drain */

int os_server_draining(void)
{
    return atomic_load(&draining);
}

/*
 * The first listener is bound WITHOUT SO_REUSEPORT, so the bind fails when any other socket
 * holds the address (a second instance, whose listeners carry SO_REUSEPORT, would otherwise
 * share it silently and take part of the traffic). SO_REUSEPORT is switched on after that
 * bind: Linux checks it on the sockets already bound when the next one binds, so our other
 * workers can still join, and listen() puts them all in one reuseport group.
 */
static int open_listener(const struct addrinfo *ai, int first, char *err, size_t errlen)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), on = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        (!first && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0) ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) != 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
        (first && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0) || listen(fd, SOMAXCONN) != 0) {
        if (errno == EADDRINUSE)
            snprintf(err, errlen, "cannot listen on %s:%d: the address is in use by another process", os_config.host,
                     os_config.port);
        else
            snprintf(err, errlen, "cannot listen on %s:%d: %s", os_config.host, os_config.port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static void on_connection_closed(void *data)
{
    os_worker_t *worker = data;
    worker->connections--;
}

static void accept_one(os_worker_t *worker, h2o_socket_t *sock)
{
    worker->connections++;
    sock->on_close.cb = on_connection_closed;
    sock->on_close.data = worker;
    h2o_accept(&worker->accept_ctx, sock);
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    os_worker_t *worker = listener->data;
    if (err != NULL)
        return;
    /* Accept a bounded batch so one busy listener cannot starve the rest of the loop. */
    for (int i = 0; i < 16; i++) {
        h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
        if (sock == NULL)
            return;
        accept_one(worker, sock);
    }
}

static void publish_gauges(os_worker_t *worker)
{
    os_db_stats_t db;
    os_db_pool_stats(worker->db, &db);
    os_metrics_set_gauges(worker->metrics, worker->tasks_running, db.size, db.connected, db.busy, db.waiting);
    /* h2o 2.2 keeps every open connection on one of these lists: counting them costs a walk of
     * the worker's connections every tick, and nothing per request. */
    uint64_t connections = 0;
    for (h2o_linklist_t *l = worker->ctx.http1._conns.next; l != &worker->ctx.http1._conns; l = l->next)
        connections++;
    for (h2o_linklist_t *l = worker->ctx.http2._conns.next; l != &worker->ctx.http2._conns; l = l->next)
        connections++;
    os_metrics_set_worker(worker->metrics, os_vm_memory_bytes(worker->vm), connections);
}

static void on_tick(os_timer_t *timer)
{
    os_worker_t *worker = H2O_STRUCT_FROM_MEMBER(os_worker_t, tick, timer);
    publish_gauges(worker);
    if (!atomic_load(&stopping))
        os_reload_poll(worker);
    if (atomic_load(&stopping) && worker->stop_deadline_ms == 0) {
        worker->stop_deadline_ms = os_clock_ms() + (uint64_t)os_config.shutdown_timeout_ms;
        if (worker->listener != NULL) {
            /* Closing a listener resets the connections still in its accept queue, which their
             * clients saw accepted: take them all first, and they are served like the rest. */
            h2o_socket_t *sock;
            while ((sock = h2o_evloop_socket_accept(worker->listener)) != NULL)
                accept_one(worker, sock);
            h2o_socket_read_stop(worker->listener);
            h2o_socket_close(worker->listener);
            worker->listener = NULL;
        }
        h2o_context_request_shutdown(&worker->ctx);
        /* Every idle HTTP/1 connection waits in this one list, in the order it went idle: a
         * shorter timeout applies to all of them alike and keeps that order. */
        if (worker->ctx.http1.req_timeout.timeout > DRAIN_IDLE_MS)
            worker->ctx.http1.req_timeout.timeout = DRAIN_IDLE_MS;
        os_log(OS_LOG_DEBUG, "listener closed: draining %zu requests on %zu connections", worker->tasks_running,
               worker->connections);
    }
    os_timer_start(&worker->timers, &worker->tick, TICK_MS);
}

static int worker_done(os_worker_t *worker)
{
    if (worker->stop_deadline_ms == 0)
        return 0;
    if (worker->tasks_running == 0 && worker->jobs_running == 0 && worker->connections == 0)
        return 1;
    if (os_clock_ms() >= worker->stop_deadline_ms) {
        os_log(OS_LOG_WARN, "shutdown deadline passed with %zu requests, %zu job runners and %zu connections left",
               worker->tasks_running, worker->jobs_running, worker->connections);
        return 1;
    }
    return 0;
}

/* Once draining, every answer closes its connection: a client's next request opens a new
 * one, which goes to a replica that still listens. */
static void close_when_draining(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    (void)self;
    if (atomic_load(&stopping))
        req->http1_is_persistent = 0;
    h2o_setup_next_ostream(req, slot);
}

static void *worker_main(void *arg)
{
    os_worker_t *worker = arg;
    char err[1024];
    os_worker_set_current(worker);
    os_log_set_worker(worker->id);

    h2o_context_init(&worker->ctx, h2o_evloop_create(), &globalconf);
    worker->accept_ctx.ctx = &worker->ctx;
    worker->accept_ctx.hosts = globalconf.hosts;
    worker->metrics = os_metrics_create(worker->id);
    if ((worker->vm = os_vm_create(worker, 0, err, sizeof(err))) == NULL) {
        os_log(OS_LOG_ERROR, "cannot load the route scripts: %s", err);
        worker->exit_status = 1;
        atomic_store(&stopping, 1);
        kill(getpid(), SIGTERM);
        return NULL;
    }
    if (os_config.database_url[0] != '\0' &&
        (worker->db = os_db_pool_create(worker, "DATABASE_URL", 0, os_config.database_url,
                                        (size_t)os_config.db_pool_size, err, sizeof(err))) == NULL)
        os_log(OS_LOG_ERROR, "%s", err); /* main checked the URL already: out of memory */
    if (os_config.database_read_url[0] != '\0' &&
        (worker->replica = os_replica_create(worker, os_config.database_read_url, (size_t)os_config.db_pool_size, err,
                                             sizeof(err))) == NULL)
        os_log(OS_LOG_ERROR, "%s", err);
    worker->http = os_http_pools_create(worker);
    /* Every worker runs the jobs routes.lua gives it (lib/host.lua: worker 0 or all of them);
     * the database arbitrates between workers and replicas. */
    if (os_config.jobs)
        os_luahost_start_background(worker);

    worker->listener = h2o_evloop_socket_create(worker->ctx.loop, worker->listen_fd, H2O_SOCKET_FLAG_DONT_READ);
    worker->listener->data = worker;
    h2o_socket_read_start(worker->listener, on_accept);
    os_timer_init(&worker->tick, on_tick);
    os_timer_start(&worker->timers, &worker->tick, 0);
    if (os_log_buffer_start(&worker->timers, (size_t)os_config.access_log_buffer_bytes,
                            (uint64_t)os_config.access_log_flush_ms) != 0)
        os_log(OS_LOG_WARN, "no memory for the access log buffer: each line is written at once");

    while (!worker_done(worker)) {
        /* h2o runs a socket's deferred callbacks (a write that completed at once: only then does
         * its HTTP client start reading the answer) after its next poll. A call begun from our
         * timers (a resumed or spawned task) would wait out that poll, up to a tick, for an
         * answer already there: poll without waiting while any is deferred. */
        h2o_evloop_t *loop = worker->ctx.loop;
        int pending = loop->_pending_as_client != NULL || loop->_pending_as_server != NULL;
        h2o_evloop_run(loop, pending ? 0 : os_timers_next_wait(&worker->timers, TICK_MS));
        os_timers_run(&worker->timers);
    }
    os_replica_stop(worker->replica);
    os_log_buffer_stop(); /* the drain has ended: every request this worker served is in it */
    return NULL;
}

static void configure_h2o(void)
{
    h2o_config_init(&globalconf);
    globalconf.server_name = h2o_iovec_init(H2O_STRLIT("orderservice"));
    /* h2o answers 413 and closes as soon as Content-Length (or the chunks read so far) pass this. */
    globalconf.max_request_entity_size = MAX_REQUEST_BODY;
    h2o_hostconf_t *host = h2o_config_register_host(&globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    /* Static files first: h2o picks the longest matching prefix, so these never reach Lua. */
    os_static_register(host, "/static/", os_config.static_dir);
    os_static_register(host, "/orders-doc/ui/", os_config.swagger_ui_dir);
    h2o_pathconf_t *root = h2o_config_register_path(host, "/", 0);
    /* Handlers run in registration order; the framing check passes (-1) on sound requests. */
    os_framing_register(host, root);
    os_reload_register(root); /* moves the worker to the live scripts generation, then passes */
    os_luahost_register(root);
    h2o_filter_t *filter = h2o_create_filter(root, sizeof(*filter));
    filter->on_setup_ostream = close_when_draining;
}

int os_server_run(void)
{
    char err[512], port[16];
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    snprintf(port, sizeof(port), "%d", os_config.port);
    int gai = getaddrinfo(os_config.host, port, &hints, &ai);
    if (gai != 0) {
        os_log(OS_LOG_ERROR, "cannot resolve HOST %s: %s", os_config.host, gai_strerror(gai));
        return 2;
    }
    int nworkers = os_config.workers;
    os_worker_t *workers = calloc((size_t)nworkers, sizeof(*workers));
    for (int i = 0; i < nworkers; i++) {
        workers[i].id = i;
        if ((workers[i].listen_fd = open_listener(ai, i == 0, err, sizeof(err))) < 0) {
            os_log(OS_LOG_ERROR, "%s", err);
            while (i-- > 0)
                close(workers[i].listen_fd);
            free(workers);
            freeaddrinfo(ai);
            return 1;
        }
    }
    freeaddrinfo(ai);
    configure_h2o();

    /* Signals go to the main thread only: workers never see them, the main thread waits. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    os_reload_init(workers, nworkers);
    for (int i = 0; i < nworkers; i++)
        pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
    os_log(OS_LOG_INFO, "listening on %s:%d with %d workers", os_config.host, os_config.port, nworkers);

    /* The main thread waits for signals and, between them, watches the scripts. */
    int sig;
    uint64_t seen = os_config.reload_poll_ms > 0 ? os_reload_fingerprint() : 0;
    for (;;) {
        struct timespec poll = {os_config.reload_poll_ms / 1000, (os_config.reload_poll_ms % 1000) * 1000000L};
        sig = os_config.reload_poll_ms > 0 ? sigtimedwait(&set, NULL, &poll) : sigwaitinfo(&set, NULL);
        if (sig == SIGTERM || sig == SIGINT)
            break;
        if (sig == SIGHUP) {
            os_log(OS_LOG_INFO, "SIGHUP: reloading the scripts");
            os_reload_request();
        } else if (os_config.reload_poll_ms > 0) {
            uint64_t now = os_reload_fingerprint();
            if (now != seen) {
                os_log(OS_LOG_INFO, "scripts changed on disk: reloading");
                os_reload_request();
            }
            seen = now;
        }
    }
    atomic_store(&draining, 1);
    /* Not when a worker stopped the server itself (its scripts did not load): nothing to hand over. */
    if (sig == SIGTERM && os_config.shutdown_ready_delay_ms > 0 && !atomic_load(&stopping)) {
        /* Still accepting: the load balancer sees readiness fail and moves traffic away first.
         * Another SIGTERM or a SIGINT cuts the wait short. */
        os_log(OS_LOG_INFO, "SIGTERM: readiness answers 503; still serving for %d ms",
               os_config.shutdown_ready_delay_ms);
        sigdelset(&set, SIGHUP);
        uint64_t until = os_clock_ms() + (uint64_t)os_config.shutdown_ready_delay_ms;
        for (uint64_t now = os_clock_ms(); now < until; now = os_clock_ms()) {
            struct timespec wait = {(time_t)((until - now) / 1000), (long)((until - now) % 1000) * 1000000L};
            if (sigtimedwait(&set, NULL, &wait) > 0)
                break;
        }
    }
    atomic_store(&stopping, 1);
    os_log(OS_LOG_INFO, "received signal %d: listeners closing, draining in-flight requests (at most %d ms)", sig,
           os_config.shutdown_timeout_ms);

    int status = 0;
    for (int i = 0; i < nworkers; i++) {
        pthread_join(workers[i].thread, NULL);
        status |= workers[i].exit_status;
    }
    for (int i = 0; i < nworkers; i++) {
        os_replica_destroy(workers[i].replica);
        os_db_pool_destroy(workers[i].db);
        /* http pools are not disposed: an abandoned job may still hold one of their sockets. */
        if (workers[i].vm != NULL)
            os_vm_release(workers[i].vm);
        if (workers[i].next_vm != NULL) /* built for a reload that had not gone live */
            os_vm_release(workers[i].next_vm);
        os_timers_dispose(&workers[i].timers);
    }
    os_metrics_destroy_all();
    free(workers);
    os_log(OS_LOG_INFO, "stopped");
    return status;
}
