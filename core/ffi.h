/*
 * ffi.h - the whole surface Lua may call through the LuaJIT FFI.
 *
 * Rules of the boundary (after lua-resty-core):
 *  - plain C types only; no struct is allocated by C and handed to Lua to free;
 *  - every function returns an int status (0 = ok, negative = error) or a value
 *    whose meaning is documented on its line; error text, where there is any, is a
 *    static string or is copied into a caller-provided buffer;
 *  - nothing longjmps or raises across the boundary.
 * The block between FFI-CDEF-BEGIN and FFI-CDEF-END is mirrored verbatim (modulo
 * whitespace and comments) by scripts/lib/core.lua; tests/lua/ffi_cdef_spec.lua
 * fails when they differ.
 */
#ifndef OS_FFI_H
#define OS_FFI_H

#include <stddef.h>
#include <stdint.h>

/* FFI-CDEF-BEGIN */

/* ---- money: amounts are int64 cents ---- */
typedef struct os_order_totals {
    int64_t subtotal;
    int64_t tax;
    int64_t shipping;
    int64_t total;
} os_order_totals_t;

/** Parses [-]digits[.dd] (len bytes, no NUL needed) into cents: 0 ok, -1 syntax, -2 over 2 decimals, -3 NULL out, -4 beyond 10^15. */
int os_money_parse(const char *s, size_t len, int64_t *cents_out);
/** Writes cents as "-12.50" (always 2 decimals) plus NUL; returns the length without NUL, 0 if buflen is too small. */
size_t os_money_format(int64_t cents, char *buf, size_t buflen);
/** Sums qty*unit, adds tax (subtotal*ppm/10^6, half-to-even) and shipping: 0 ok, -3 negative/NULL input, -4 overflow. */
int os_money_totals(const int64_t *unit_cents, const int64_t *quantities, size_t n, int64_t tax_ppm,
                    int64_t shipping_cents, os_order_totals_t *out);
/** Returns 1 if cents fits a numeric(10,2) column (|cents| <= 9,999,999,999, i.e. 99,999,999.99), else 0. */
int os_money_fits_numeric_10_2(int64_t cents);

/* ---- order status rules ---- */
/** Returns 1 if s is a value of kind (0 order, 1 payment, 2 shipping; exact case), else 0 (also for a bad kind). */
int os_status_valid(int kind, const char *s, size_t len);
/** Returns 1 allowed, 0 refused (409), -1 `to` unknown or bad kind (400), 2 from == to (no-op); unknown `from` is refused. */
int os_status_transition(int kind, const char *from, size_t from_len, const char *to, size_t to_len);
/** Returns the static shipping status an order status implies ("Shipped", "Delivered", "Cancelled") or NULL if none. */
const char *os_status_shipping_for_order(const char *order_status, size_t len);

/* ---- status codes shared by every asynchronous operation ----
 * A call that starts an operation returns OS_OK when it is in flight (the Lua
 * wrapper must then yield; the yield returns the operation's final status) or a
 * negative status when it failed at once. os_task_error() describes the last failure. */
enum {
    OS_OK = 0,
    OS_ERR = -1,          /* the operation failed (for a query: see os_db_sqlstate) */
    OS_EUNAVAILABLE = -2, /* the database / downstream cannot be reached */
    OS_ETIMEDOUT = -3,    /* no connection became free, or the call took too long or broke after it was sent */
    OS_ESTATE = -4,        /* called in the wrong state (caller bug) */
    OS_ECANCELED = -5      /* the client went away: the request's wait was abandoned, and every later one fails at once */
};

/* ---- tasks: one per request coroutine; Lua receives its pointer as an argument ---- */
typedef struct os_task os_task_t;
const char *os_task_error(os_task_t *task);
int os_task_sleep(os_task_t *task, int64_t ms);
int os_worker_id(void);
int os_task_retired(os_task_t *task);
/** Starts a task on task's VM that runs the host's spawn runner with id (the loop starts it; counted as job work): OS_OK or OS_ERR. */
int os_task_spawn(os_task_t *task, int64_t id);
/** Ends task's sleep early (it resumes with OS_OK): 1 when it was sleeping, else 0. */
int os_task_wake(os_task_t *task);
int64_t os_monotonic_ms(void);
int64_t os_monotonic_us(void);

/* ---- the request a task answers (lib/request.lua reads it lazily, lib/host.lua writes the
 * response's headers). The text is h2o's own, in the request's pool: the pointers filled stay
 * valid while the request lives, and Lua copies them at once (ffi.string). Every call returns
 * OS_ERR once the client has gone (h2o disposed the request) or for a task with no request. ---- */
/** name's value (case-insensitive; repeated headers joined with ", "): 1 found, 0 absent, OS_ERR. */
int os_request_header(os_task_t *task, const char *name, size_t name_len, const char **value, size_t *value_len);
/** The index-th header (from 0, in arrival order, names lower-case): 1, 0 past the last, OS_ERR. */
int os_request_header_at(os_task_t *task, size_t index, const char **name, size_t *name_len, const char **value,
                         size_t *value_len);
/** A part of the request: OS_REQUEST_QUERY (after '?'), _BODY, _PEER (numeric address): 1, 0 absent, OS_ERR. */
int os_request_part(os_task_t *task, int part, const char **value, size_t *value_len);
enum { OS_REQUEST_QUERY = 0, OS_REQUEST_BODY = 1, OS_REQUEST_PEER = 2 };
/** Adds a response header (the name lower-cased; both copied): OS_OK, or OS_ERR. */
int os_response_header(os_task_t *task, const char *name, size_t name_len, const char *value, size_t value_len);

/* ---- random: per thread, seeded from getrandom(2); for jitter and ids, not secrets ---- */
uint64_t os_random_u64(void);

/* ---- logs: level 0 debug .. 3 error; msg is text, or JSON members ("k":v,...) ---- */
int os_log_enabled(int level);
void os_log_write(int level, const char *msg, size_t len);
/** The access log's line for one request (filters/access_log.lua); a NULL text is left out.
 * Debug and info lines wait in the worker's buffer (ACCESS_LOG_BUFFER_BYTES); warn and error
 * lines are written at once, after the lines waiting. */
void os_log_request(int level, const char *msg, size_t msg_len, const char *method, size_t method_len,
                    const char *path, size_t path_len, int status, int64_t ms, const char *request_id,
                    size_t request_id_len, const char *sub, size_t sub_len, const char *role, size_t role_len);

/* ---- database: queries run on the worker's pool; results stay owned by the task ---- */
int os_db_query(os_task_t *task, const char *name, const char *sql, int nparams, const char *const *params);
/** Like os_db_query, on the read replica while it is up and within READ_MAX_LAG_MS, else on the primary;
 *  a named statement outside a transaction shares a connection's pipeline, so it must only read. */
int os_db_read(os_task_t *task, const char *name, const char *sql, int nparams, const char *const *params);
/** 1 when the task's last query was sent to the read replica, else 0. */
int os_db_on_replica(os_task_t *task);
int os_db_pin(os_task_t *task);
int os_db_unpin(os_task_t *task);
int os_db_nrows(os_task_t *task);
int os_db_ncols(os_task_t *task);
const char *os_db_colname(os_task_t *task, int col);
uint32_t os_db_coltype(os_task_t *task, int col);
const char *os_db_value(os_task_t *task, int row, int col, size_t *len);
const char *os_db_sqlstate(os_task_t *task);
int64_t os_db_affected(os_task_t *task);
void os_db_clear(os_task_t *task);

/* ---- downstream HTTP: the response stays owned by the task until its next call ----
 * headers are preformatted "Name: value\r\n" lines; Host and Content-Length are added. */
int os_http_request(os_task_t *task, const char *method, const char *url, size_t url_len, const char *headers,
                    size_t headers_len, const char *body, size_t body_len);
int os_http_status(os_task_t *task);
const char *os_http_body(os_task_t *task, size_t *len);
/** 1 when the last call may have reached the other side (it was written), 0 when it provably was not. */
int os_http_maybe_sent(os_task_t *task);

/* ---- the server's life ---- */
/** 1 once SIGTERM has begun the shutdown: readiness answers 503 while in-flight work drains, else 0. */
int os_server_draining(void);

/* ---- background jobs: their liveness, for /health/ and /metrics ---- */
/** Declares the n jobs worker runs and their intervals, replacing its earlier set (a reload declares
 *  again: a job still there keeps its history, one no longer there is forgotten). */
void os_jobs_declare(int worker, const char *const *names, const int64_t *every_ms, size_t n);
/** Records that the job's instance on worker completed a cycle now. */
void os_job_succeeded(int worker, const char *name);
/** Describes the stalled job instances into buf (NUL-terminated, cut to cap); returns the length, 0 when none
 *  is stalled. */
size_t os_jobs_stalled(char *buf, size_t cap);

/* ---- metrics: Prometheus text of every worker's counters, summed ----
 * Returns the length the whole text needs; buf holds all of it (NUL-terminated) only when
 * that is below cap, otherwise a NUL-terminated prefix: render again with a bigger buffer. */
size_t os_metrics_render(char *buf, size_t cap);

/* ---- operators' metrics (scripts/lib/metrics.lua): declared by name, kept in C so a reload
 * keeps their values; each worker writes its own cells, a scrape aggregates them ---- */
enum { OS_METRIC_COUNTER = 0, OS_METRIC_GAUGE = 1, OS_METRIC_HISTOGRAM = 2 };
/* How a gauge's per-worker values combine at a scrape: summed, their max, or the one set last. */
enum { OS_METRIC_SUM = 0, OS_METRIC_MAX = 1, OS_METRIC_LATEST = 2 };
/** Declares a family (the same shape again returns the same id): its id, or -1 and a static reason in *err. */
int os_metric_declare(const char *name, const char *help, int type, int aggregate, const char *const *labels,
                      int nlabels, const double *buckets, int nbuckets, int max_series, const char **err);
/** The series of a family for these label values (claimed on first use; past max_series the "overflow" one); -1 on a bad call. */
int os_metric_series(int family, const char *const *values, int nvalues);
/** Adds value to a counter (value >= 0) or a gauge, on the calling worker: 0, or -1 on a bad call. */
int os_metric_add(int series, double value);
/** Sets a gauge on the calling worker: 0, or -1 on a bad call. */
int os_metric_set(int series, double value);
/** Counts value into a histogram on the calling worker: 0, or -1 on a bad call. */
int os_metric_observe(int series, double value);

/* ---- JWT: one key per process, loaded at start (JWT_SECRET or JWT_PUBLIC_KEY_FILE) ---- */
enum {
    OS_JWT_OK = 0,
    OS_JWT_ENOKEY = -1,     /* no key configured: every token is refused */
    OS_JWT_EFORMAT = -2,    /* too long, not three strict base64url parts, or not JSON objects */
    OS_JWT_EALG = -3,       /* alg is not the key's algorithm ("none" included), or crit is present */
    OS_JWT_ESIGNATURE = -4, /* the signature does not verify */
    OS_JWT_EEXPIRED = -5,   /* exp (plus leeway) has passed */
    OS_JWT_ENOTYET = -6,    /* nbf (minus leeway) is in the future */
    OS_JWT_EISSUER = -7,    /* iss differs from JWT_ISSUER */
    OS_JWT_EAUDIENCE = -8,  /* JWT_AUDIENCE is not aud (or not in it) */
    OS_JWT_ECLAIMS = -9,    /* exp missing, exp/nbf not an integer, a claim given twice */
    OS_JWT_ESPACE = -10,    /* the caller's buffer is too small */
    OS_JWT_EKEY = -11       /* the key cannot do this (e.g. sign with a public key), or OpenSSL failed */
};
/** Verifies a compact JWT with the process key at Unix time now (0: the clock): 0 and the payload JSON plus NUL in payload (length in *payload_len), or an OS_JWT_E* code. */
int os_jwt_verify(const char *token, size_t len, int64_t now, char *payload, size_t cap, size_t *payload_len);
/** A static description of an OS_JWT_* code (never any part of the token). */
const char *os_jwt_strerror(int code);

/* FFI-CDEF-END */

#endif
