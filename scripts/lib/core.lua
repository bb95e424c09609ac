-- core.lua - the C core as Lua sees it: the one ffi.cdef of the FFI surface.
--
-- The cdef below mirrors the FFI-CDEF block of core/ffi.h (tests/lua/ffi_cdef_spec.lua
-- compares them). Only scripts/lib modules use it; handlers call those modules.
-- Outside the server (busted specs) the symbols come from the library named by
-- OS_CORE_LIB instead of the running process.

local ffi = require("ffi")

ffi.cdef[[
typedef struct os_order_totals {
    int64_t subtotal;
    int64_t tax;
    int64_t shipping;
    int64_t total;
} os_order_totals_t;

int os_money_parse(const char *s, size_t len, int64_t *cents_out);

size_t os_money_format(int64_t cents, char *buf, size_t buflen);

int os_money_totals(const int64_t *unit_cents, const int64_t *quantities, size_t n, int64_t tax_ppm,
                    int64_t shipping_cents, os_order_totals_t *out);

int os_money_fits_numeric_10_2(int64_t cents);

int os_status_valid(int kind, const char *s, size_t len);

int os_status_transition(int kind, const char *from, size_t from_len, const char *to, size_t to_len);

const char *os_status_shipping_for_order(const char *order_status, size_t len);

enum {
    OS_OK = 0,
    OS_ERR = -1,
    OS_EUNAVAILABLE = -2,
    OS_ETIMEDOUT = -3,
    OS_ESTATE = -4,
    OS_ECANCELED = -5
};

typedef struct os_task os_task_t;
const char *os_task_error(os_task_t *task);
int os_task_sleep(os_task_t *task, int64_t ms);
int os_worker_id(void);
int os_task_retired(os_task_t *task);

int os_task_spawn(os_task_t *task, int64_t id);

int os_task_wake(os_task_t *task);
int64_t os_monotonic_ms(void);
int64_t os_monotonic_us(void);

int os_request_header(os_task_t *task, const char *name, size_t name_len, const char **value, size_t *value_len);

int os_request_header_at(os_task_t *task, size_t index, const char **name, size_t *name_len, const char **value,
                         size_t *value_len);

int os_request_part(os_task_t *task, int part, const char **value, size_t *value_len);
enum { OS_REQUEST_QUERY = 0, OS_REQUEST_BODY = 1, OS_REQUEST_PEER = 2 };

int os_response_header(os_task_t *task, const char *name, size_t name_len, const char *value, size_t value_len);

uint64_t os_random_u64(void);

int os_log_enabled(int level);
void os_log_write(int level, const char *msg, size_t len);

void os_log_request(int level, const char *msg, size_t msg_len, const char *method, size_t method_len,
                    const char *path, size_t path_len, int status, int64_t ms, const char *request_id,
                    size_t request_id_len, const char *sub, size_t sub_len, const char *role, size_t role_len);

int os_db_query(os_task_t *task, const char *name, const char *sql, int nparams, const char *const *params);

int os_db_read(os_task_t *task, const char *name, const char *sql, int nparams, const char *const *params);

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

int os_http_request(os_task_t *task, const char *method, const char *url, size_t url_len, const char *headers,
                    size_t headers_len, const char *body, size_t body_len);
int os_http_status(os_task_t *task);
const char *os_http_body(os_task_t *task, size_t *len);

int os_http_maybe_sent(os_task_t *task);

int os_server_draining(void);

void os_jobs_declare(int worker, const char *const *names, const int64_t *every_ms, size_t n);

void os_job_succeeded(int worker, const char *name);

size_t os_jobs_stalled(char *buf, size_t cap);

size_t os_metrics_render(char *buf, size_t cap);

enum { OS_METRIC_COUNTER = 0, OS_METRIC_GAUGE = 1, OS_METRIC_HISTOGRAM = 2 };

enum { OS_METRIC_SUM = 0, OS_METRIC_MAX = 1, OS_METRIC_LATEST = 2 };

int os_metric_declare(const char *name, const char *help, int type, int aggregate, const char *const *labels,
                      int nlabels, const double *buckets, int nbuckets, int max_series, const char **err);

int os_metric_series(int family, const char *const *values, int nvalues);

int os_metric_add(int series, double value);

int os_metric_set(int series, double value);

int os_metric_observe(int series, double value);

enum {
    OS_JWT_OK = 0,
    OS_JWT_ENOKEY = -1,
    OS_JWT_EFORMAT = -2,
    OS_JWT_EALG = -3,
    OS_JWT_ESIGNATURE = -4,
    OS_JWT_EEXPIRED = -5,
    OS_JWT_ENOTYET = -6,
    OS_JWT_EISSUER = -7,
    OS_JWT_EAUDIENCE = -8,
    OS_JWT_ECLAIMS = -9,
    OS_JWT_ESPACE = -10,
    OS_JWT_EKEY = -11
};

int os_jwt_verify(const char *token, size_t len, int64_t now, char *payload, size_t cap, size_t *payload_len);

const char *os_jwt_strerror(int code);
]]

local C = ffi.C
if not pcall(function() return C.os_money_parse end) then
    local path = os.getenv("OS_CORE_LIB")
    if not path then
        error("the C core is not loaded: run inside orderservice or set OS_CORE_LIB")
    end
    C = ffi.load(path)
end

return C
