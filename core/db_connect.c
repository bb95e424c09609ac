/*
 * db_connect.c - owns bringing a pool's connections up, for db.c (db_internal.h).
 *
 * DATABASE_URL (or DATABASE_READ_URL) is parsed once (PQconninfoParse) into its targets, one per
 * host of a multi-host URL. For each target a host name is resolved by h2o's resolver threads,
 * never on the loop, and every address is tried in turn with libpq connecting by `hostaddr`
 * (`host` stays, for TLS and target_session_attrs). Each resolution and each attempt is bounded
 * by DB_CONNECT_TIMEOUT_MS; when every address of every target failed, db.c's db_conn_down
 * waits out an exponential backoff with jitter and the round starts over. libpq may close its
 * socket and open another (with the same number) between PQconnectPoll steps, so the loop's
 * watch is made afresh after every step, on a dup() of libpq's descriptor (h2o closes its copy,
 * libpq its own).
 */
#include "db_internal.h"
#include "config.h"
#include "log.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void conn_try_target(os_db_conn_t *conn);
static void conn_try_addr(os_db_conn_t *conn);

/* ---- the loop's watch on libpq's socket ---- */

static void conn_unwatch(os_db_conn_t *conn)
{
    if (conn->sock != NULL) {
        h2o_socket_close(conn->sock);
        conn->sock = NULL;
    }
    conn->want_write = 0;
}

void db_conn_want_write(os_db_conn_t *conn)
{
    if (!conn->want_write) {
        conn->want_write = 1;
        h2o_socket_notify_write(conn->sock, db_conn_on_writable);
    }
}

/* Watches libpq's current socket afresh: whether it is the same one cannot be told from its number. */
static int conn_watch(os_db_conn_t *conn)
{
    conn_unwatch(conn);
    int fd = PQsocket(conn->pg);
    if (fd < 0)
        return -1;
    int dupfd = dup(fd);
    if (dupfd < 0)
        return -1;
    conn->sock = h2o_evloop_socket_create(conn->pool->worker->ctx.loop, dupfd, H2O_SOCKET_FLAG_DONT_READ);
    conn->sock->data = conn;
    h2o_socket_read_start(conn->sock, db_conn_on_readable);
    return 0;
}

/* Server notices ("relation already exists, skipping") go to the log, not raw to stderr. */
static void on_notice(void *arg, const char *message)
{
    (void)arg;
    os_log(OS_LOG_DEBUG, "database notice: %.*s", (int)strcspn(message, "\n"), message);
}

static void record_error(os_db_conn_t *conn, const char *why)
{
    snprintf(conn->last_error, sizeof(conn->last_error), "%.*s", (int)strcspn(why, "\n"), why);
}

/* ---- connecting: targets, then their addresses ---- */

void db_close_pg(os_db_conn_t *conn)
{
    conn_unwatch(conn);
    if (conn->pg != NULL)
        PQfinish(conn->pg);
    conn->pg = NULL;
}

/* The attempt on the current address failed: try the next address, then the next target. */
static void attempt_failed(os_db_conn_t *conn, const char *why)
{
    record_error(conn, why);
    os_log(OS_LOG_DEBUG, "database connection attempt failed: %s", conn->last_error);
    os_timer_stop(&conn->pool->worker->timers, &conn->connect_timer);
    db_close_pg(conn);
    conn->addr++;
    conn_try_addr(conn);
}

static void on_connect_timeout(os_timer_t *timer)
{
    os_db_conn_t *conn = H2O_STRUCT_FROM_MEMBER(os_db_conn_t, connect_timer, timer);
    char why[128];
    if (conn->state == CONN_RESOLVING) {
        h2o_hostinfo_getaddr_cancel(conn->resolving);
        conn->resolving = NULL;
        snprintf(why, sizeof(why), "resolving %s took over %d ms", conn->pool->targets[conn->target].host,
                 os_config.db_connect_timeout_ms);
        record_error(conn, why);
        conn->target++;
        conn_try_target(conn);
        return;
    }
    snprintf(why, sizeof(why), "connecting took over %d ms", os_config.db_connect_timeout_ms);
    attempt_failed(conn, why);
}

/* Starts libpq on the current address (or on the target's host when it needs no resolving). */
static void conn_try_addr(os_db_conn_t *conn)
{
    os_db_pool_t *pool = conn->pool;
    db_target_t *t = &pool->targets[conn->target];
    if (conn->addr >= conn->naddrs) {
        conn->target++;
        conn_try_target(conn);
        return;
    }
    pool->values[KEY_HOST] = t->host;
    pool->values[KEY_HOSTADDR] = conn->addrs[conn->addr][0] != '\0' ? conn->addrs[conn->addr] : NULL;
    pool->values[KEY_PORT] = t->port;
    conn->state = CONN_CONNECTING;
    conn->pg = PQconnectStartParams(pool->keys, pool->values, 0);
    os_timer_start(&pool->worker->timers, &conn->connect_timer, (uint64_t)os_config.db_connect_timeout_ms);
    if (conn->pg == NULL) {
        attempt_failed(conn, "out of memory");
        return;
    }
    if (PQstatus(conn->pg) == CONNECTION_BAD || PQsetnonblocking(conn->pg, 1) != 0 || conn_watch(conn) != 0) {
        attempt_failed(conn, PQerrorMessage(conn->pg));
        return;
    }
    PQsetNoticeProcessor(conn->pg, on_notice, NULL);
    /* libpq's contract: after PQconnectStart, wait until the socket is writable, then poll. */
    conn->poll_write = 1;
    db_conn_want_write(conn);
}

static void on_resolved(h2o_hostinfo_getaddr_req_t *req, const char *errstr, struct addrinfo *res, void *data)
{
    os_db_conn_t *conn = data;
    (void)req;
    conn->resolving = NULL;
    os_timer_stop(&conn->pool->worker->timers, &conn->connect_timer);
    conn->naddrs = conn->addr = 0;
    for (struct addrinfo *ai = res; errstr == NULL && ai != NULL && conn->naddrs < MAX_ADDRS; ai = ai->ai_next) {
        const void *a = ai->ai_family == AF_INET ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                        : ai->ai_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr
                                                    : NULL;
        if (a != NULL && inet_ntop(ai->ai_family, a, conn->addrs[conn->naddrs], INET6_ADDRSTRLEN) != NULL)
            conn->naddrs++;
    }
    if (conn->naddrs == 0) {
        char why[256];
        snprintf(why, sizeof(why), "cannot resolve %s: %s", conn->pool->targets[conn->target].host,
                 errstr != NULL ? errstr : "no address");
        record_error(conn, why);
        conn->target++;
        conn_try_target(conn);
        return;
    }
    conn_try_addr(conn);
}

static int needs_resolving(const db_target_t *t)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return t->host != NULL && t->host[0] != '/' && t->host[0] != '@' && t->hostaddr == NULL &&
           inet_pton(AF_INET, t->host, buf) != 1 && inet_pton(AF_INET6, t->host, buf) != 1;
}

static void conn_try_target(os_db_conn_t *conn)
{
    os_db_pool_t *pool = conn->pool;
    if (conn->target >= pool->ntargets) {
        db_conn_down(conn, conn->last_error);
        return;
    }
    db_target_t *t = &pool->targets[conn->target];
    conn->naddrs = 1;
    conn->addr = 0;
    if (!needs_resolving(t)) {
        /* A socket path, a literal address, or a hostaddr the URL gave: libpq resolves nothing. */
        const char *addr = t->hostaddr != NULL ? t->hostaddr : t->host != NULL && t->host[0] != '/' && t->host[0] != '@' ? t->host : "";
        snprintf(conn->addrs[0], sizeof(conn->addrs[0]), "%s", addr);
        conn_try_addr(conn);
        return;
    }
    conn->state = CONN_RESOLVING;
    os_timer_start(&pool->worker->timers, &conn->connect_timer, (uint64_t)os_config.db_connect_timeout_ms);
    const char *port = t->port != NULL ? t->port : "5432";
    conn->resolving = h2o_hostinfo_getaddr(&pool->worker->ctx.receivers.hostinfo_getaddr,
                                           h2o_iovec_init(t->host, strlen(t->host)), h2o_iovec_init(port, strlen(port)),
                                           AF_UNSPEC, SOCK_STREAM, IPPROTO_TCP, AI_ADDRCONFIG | AI_NUMERICSERV,
                                           on_resolved, conn);
}

/* Starts a round over every target. */
void db_conn_connect(os_db_conn_t *conn)
{
    conn->target = 0;
    conn->last_error[0] = '\0';
    conn_try_target(conn);
}

static void on_retry(os_timer_t *timer)
{
    os_db_conn_t *conn = H2O_STRUCT_FROM_MEMBER(os_db_conn_t, retry_timer, timer);
    db_conn_connect(conn);
}

void db_conn_poll_connect(os_db_conn_t *conn)
{
    switch (PQconnectPoll(conn->pg)) {
    case PGRES_POLLING_READING:
        conn->poll_write = 0;
        if (conn_watch(conn) != 0)
            attempt_failed(conn, "libpq has no socket");
        return;
    case PGRES_POLLING_WRITING:
        conn->poll_write = 1;
        if (conn_watch(conn) != 0)
            attempt_failed(conn, "libpq has no socket");
        else
            db_conn_want_write(conn);
        return;
    case PGRES_POLLING_OK:
        os_timer_stop(&conn->pool->worker->timers, &conn->connect_timer);
        if (conn_watch(conn) != 0) {
            attempt_failed(conn, "libpq has no socket");
            return;
        }
        if (conn->backoff_ms != 0)
            os_log(OS_LOG_INFO, "database connection re-established");
        conn->backoff_ms = 0;
        conn->state = CONN_IDLE;
        db_pool_hand_over(conn->pool, conn);
        return;
    default:
        attempt_failed(conn, PQerrorMessage(conn->pg));
        return;
    }
}

void db_conn_init(os_db_conn_t *conn)
{
    os_timer_init(&conn->retry_timer, on_retry);
    os_timer_init(&conn->connect_timer, on_connect_timeout);
}

/* ---- DATABASE_URL: its targets and connection keywords ---- */

/* Splits a comma list in place; returns how many items (empty items are NULL). */
static size_t split_list(char *s, char **items, size_t max)
{
    size_t n = 0;
    while (s != NULL && n < max) {
        char *comma = strchr(s, ',');
        if (comma != NULL)
            *comma = '\0';
        items[n++] = *s != '\0' ? s : NULL;
        s = comma != NULL ? comma + 1 : NULL;
    }
    return n;
}

int db_pool_parse(os_db_pool_t *pool, const char *conninfo, char *err, size_t errlen)
{
    char *msg = NULL;
    pool->parsed = PQconninfoParse(conninfo, &msg);
    if (pool->parsed == NULL) {
        snprintf(err, errlen, "%s does not parse: %.*s", pool->setting, msg != NULL ? (int)strcspn(msg, "\n") : 13,
                 msg != NULL ? msg : "out of memory");
        PQfreemem(msg);
        return -1;
    }
    size_t nopts = 0;
    const char *host = NULL, *hostaddr = NULL, *port = NULL, *options = NULL;
    for (PQconninfoOption *o = pool->parsed; o->keyword != NULL; o++)
        nopts++;
    pool->keys = calloc(nopts + KEY_FIXED + 3, sizeof(char *));
    pool->values = calloc(nopts + KEY_FIXED + 3, sizeof(char *));
    pool->keys[KEY_HOST] = "host";
    pool->keys[KEY_HOSTADDR] = "hostaddr";
    pool->keys[KEY_PORT] = "port";
    size_t k = KEY_FIXED;
    for (PQconninfoOption *o = pool->parsed; o->keyword != NULL; o++) {
        if (o->val == NULL)
            continue;
        if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "hostaddr") == 0)
            hostaddr = o->val;
        else if (strcmp(o->keyword, "port") == 0)
            port = o->val;
        else if (strcmp(o->keyword, "options") == 0)
            options = o->val;
        else if (strcmp(o->keyword, "application_name") != 0) {
            pool->keys[k] = o->keyword;
            pool->values[k++] = o->val;
        }
    }
    /* client_connection_check_interval (PostgreSQL 14+): a backend running a query checks every
     * second whether its client closed the socket, and stops the query if so; that is how a
     * query whose requester went away is stopped (conn_recycle). */
    snprintf(pool->options, sizeof(pool->options),
             "%s%s-c TimeZone=UTC -c DateStyle=ISO -c statement_timeout=%d -c client_connection_check_interval=%d",
             options != NULL ? options : "", options != NULL ? " " : "", os_config.db_statement_timeout_ms,
             DB_CLIENT_CHECK_MS);
    pool->keys[k] = "options";
    pool->values[k++] = pool->options;
    pool->keys[k] = "application_name";
    pool->values[k++] = "orderservice";

    /* One target per host; a single port (or hostaddr) applies to every host. */
    size_t hlen = host ? strlen(host) : 0, alen = hostaddr ? strlen(hostaddr) : 0, plen = port ? strlen(port) : 0;
    pool->lists = malloc(hlen + alen + plen + 3);
    char *hl = pool->lists, *al = hl + hlen + 1, *pl = al + alen + 1;
    memcpy(hl, host ? host : "", hlen + 1);
    memcpy(al, hostaddr ? hostaddr : "", alen + 1);
    memcpy(pl, port ? port : "", plen + 1);
    char *hosts[64], *addrs[64], *ports[64];
    size_t nh = host ? split_list(hl, hosts, 64) : 0, na = hostaddr ? split_list(al, addrs, 64) : 0,
           np = port ? split_list(pl, ports, 64) : 0;
    size_t n = nh > na ? nh : na;
    if (n == 0)
        n = 1;
    if ((np > 1 && np != n) || (nh > 1 && nh != n) || (na > 1 && na != n)) {
        snprintf(err, errlen, "%s: host, hostaddr and port lists differ in length", pool->setting);
        return -1;
    }
    pool->targets = calloc(n, sizeof(*pool->targets));
    pool->ntargets = n;
    for (size_t i = 0; i < n; i++) {
        pool->targets[i].host = nh == 0 ? NULL : hosts[nh == 1 ? 0 : i];
        pool->targets[i].hostaddr = na == 0 ? NULL : addrs[na == 1 ? 0 : i];
        pool->targets[i].port = np == 0 ? NULL : ports[np == 1 ? 0 : i];
    }
    return 0;
}

int os_db_url_check(const char *setting, const char *conninfo, char *err, size_t errlen)
{
    os_db_pool_t *pool = calloc(1, sizeof(*pool));
    pool->setting = setting;
    int rc = db_pool_parse(pool, conninfo, err, errlen);
    os_db_pool_destroy(pool);
    return rc;
}
