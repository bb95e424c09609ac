/*
 * config.c - owns every setting of the service, the C core's and the Lua scripts' alike:
 * one table below names each environment variable, its type, default and bounds. It is
 * parsed once at start; a value that does not parse (or a default that would not) is refused
 * with a message naming the variable, and main exits with status 2, so a typo never silently
 * falls back to a default. The scripts read the same parsed values through
 * require("lib.config"), a read-only table each VM gets from os_config_push_lua; nothing in
 * Lua reads the environment.
 */
#include "config.h"
#include "log.h"
#include "money.h"

#include <errno.h>
#include <h2o.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

os_config_t os_config;

typedef enum {
    T_INT,      /* decimal integer within [min, max] */
    T_BOOL,     /* 0, 1, false, true */
    T_STR,      /* any text that fits */
    T_URL,      /* empty, or an http:// URL with a host */
    T_LEVEL,    /* debug, info, warn, error */
    T_MONEY,    /* an amount like 50.00, into int64 cents */
    T_RATE,     /* a rate between 0 and 1 like 0.05, into int64 parts per million */
    T_FRACTION, /* a probability between 0 and 1, into a double */
} kind_t;

typedef struct setting {
    const char *name;
    kind_t kind;
    size_t offset, size; /* the field of os_config_t */
    const char *def;     /* NULL: computed (WORKERS) */
    long min, max;       /* T_INT only */
    int lua;             /* handed to the scripts through lib.config */
} setting_t;

#define F(field) offsetof(os_config_t, field), sizeof(((os_config_t *)0)->field)

/* The order is the order of the README's table. */
static const setting_t settings[] = {
    {"HOST", T_STR, F(host), "0.0.0.0", 0, 0, 1},
    {"PORT", T_INT, F(port), "8001", 1, 65535, 1},
    {"WORKERS", T_INT, F(workers), NULL, 1, 256, 1},
    {"ROUTES_FILE", T_STR, F(routes_file), "./routes.lua", 0, 0, 1},
    {"SCRIPTS_DIR", T_STR, F(scripts_dir), "./scripts", 0, 0, 1},
    {"LOG_LEVEL", T_LEVEL, F(log_level), "info", 0, 0, 1},
    {"ACCESS_LOG_BUFFER_BYTES", T_INT, F(access_log_buffer_bytes), "65536", 0, 16777216, 1},
    {"ACCESS_LOG_FLUSH_MS", T_INT, F(access_log_flush_ms), "1000", 1, 60000, 1},
    /* Not handed to Lua: it may carry a password, and the scripts reach the database through C. */
    {"DATABASE_URL", T_STR, F(database_url), "", 0, 0, 0},
    {"DB_POOL_SIZE", T_INT, F(db_pool_size), "4", 1, 1000, 1},
    {"DB_ACQUIRE_TIMEOUT_MS", T_INT, F(db_acquire_timeout_ms), "2000", 1, 600000, 1},
    {"DB_STATEMENT_TIMEOUT_MS", T_INT, F(db_statement_timeout_ms), "30000", 0, 3600000, 1},
    {"DB_CONNECT_TIMEOUT_MS", T_INT, F(db_connect_timeout_ms), "5000", 1, 600000, 1},
    {"DB_PIPELINE_DEPTH", T_INT, F(db_pipeline_depth), "0", 0, 1000, 1},
    /* Not handed to Lua either, for the same reason as DATABASE_URL. */
    {"DATABASE_READ_URL", T_STR, F(database_read_url), "", 0, 0, 0},
    {"READ_MAX_LAG_MS", T_INT, F(read_max_lag_ms), "2000", 0, 3600000, 1},
    {"MIGRATE_ON_START", T_BOOL, F(migrate_on_start), "0", 0, 0, 1},
    {"MIGRATIONS_DIR", T_STR, F(migrations_dir), "./sql/migrations", 0, 0, 1},
    {"SEED_DIR", T_STR, F(seed_dir), "./seed", 0, 0, 1},
    {"STATIC_DIR", T_STR, F(static_dir), "./static", 0, 0, 1},
    {"SWAGGER_UI_DIR", T_STR, F(swagger_ui_dir), "./web/node_modules/swagger-ui-dist", 0, 0, 1},
    {"SHUTDOWN_TIMEOUT_MS", T_INT, F(shutdown_timeout_ms), "10000", 0, 600000, 1},
    {"SHUTDOWN_READY_DELAY_MS", T_INT, F(shutdown_ready_delay_ms), "3000", 0, 600000, 1},
    {"TAX_RATE", T_RATE, F(tax_ppm), "0.05", 0, 0, 1},
    {"SHIPPING_FEE", T_MONEY, F(shipping_cents), "50.00", 0, 0, 1},
    {"INVENTORY_SERVICE_URL", T_URL, F(inventory_service_url), "", 0, 0, 1},
    {"PAYMENT_SERVICE_URL", T_URL, F(payment_service_url), "", 0, 0, 1},
    {"SHIPPING_SERVICE_URL", T_URL, F(shipping_service_url), "", 0, 0, 1},
    {"NOTIFICATION_SERVICE_URL", T_URL, F(notification_service_url), "", 0, 0, 1},
    {"DOWNSTREAM_TIMEOUT_MS", T_INT, F(downstream_timeout_ms), "2000", 1, 600000, 1},
    {"DOWNSTREAM_POOL_SIZE", T_INT, F(downstream_pool_size), "64", 1, 10000, 1},
    {"BREAKER_FAILURES", T_INT, F(breaker_failures), "5", 1, 1000000, 1},
    {"BREAKER_COOLDOWN_MS", T_INT, F(breaker_cooldown_ms), "5000", 1, 3600000, 1},
    {"JOBS", T_BOOL, F(jobs), "1", 0, 0, 1},
    {"OUTBOX_EVERY_MS", T_INT, F(outbox_every_ms), "250", 1, 3600000, 1},
    {"OUTBOX_BACKOFF_BASE_MS", T_INT, F(outbox_backoff_base_ms), "1000", 1, 86400000, 1},
    {"OUTBOX_BACKOFF_MAX_MS", T_INT, F(outbox_backoff_max_ms), "300000", 1, 86400000, 1},
    {"SAGA_RECOVERY_EVERY_MS", T_INT, F(saga_recovery_every_ms), "5000", 1, 3600000, 1},
    {"SAGA_GRACE_MS", T_INT, F(saga_grace_ms), "30000", 1, 86400000, 1},
    {"OUTBOX_LEASE_MS", T_INT, F(outbox_lease_ms), "120000", 1000, 86400000, 1},
    {"OUTBOX_CONCURRENCY", T_INT, F(outbox_concurrency), "64", 1, 1000, 1},
    {"RECONCILE_WINDOW_MS", T_INT, F(reconcile_window_ms), "900000", 1, 604800000, 1},
    {"RELOAD_POLL_MS", T_INT, F(reload_poll_ms), "1000", 0, 3600000, 1},
    {"STANDIN_LATENCY_MS", T_INT, F(standin_latency_ms), "0", 0, 600000, 1},
    {"STANDIN_FAILURE_RATE", T_FRACTION, F(standin_failure_rate), "0", 0, 0, 1},
    {"STANDIN_CALL_LOG", T_INT, F(standin_call_log), "5000", 1, 1000000, 1},
    {"LUAJIT_OFF", T_BOOL, F(luajit_off), "0", 0, 0, 1},
    /* Authentication (core/jwt.c). The secret is not handed to Lua: only C verifies tokens. */
    {"JWT_SECRET", T_STR, F(jwt_secret), "", 0, 0, 0},
    {"JWT_PUBLIC_KEY_FILE", T_STR, F(jwt_public_key_file), "", 0, 0, 1},
    {"JWT_ISSUER", T_STR, F(jwt_issuer), "", 0, 0, 1},
    {"JWT_AUDIENCE", T_STR, F(jwt_audience), "", 0, 0, 1},
    {"ORDERSERVICE_ENV", T_STR, F(env), "production", 0, 0, 1},
};

static int parse_int(const char *v, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n < min || n > max)
        return -1;
    *out = n;
    return 0;
}

static int parse_url(const char *v)
{
    h2o_url_t url;
    if (*v == '\0')
        return 0;
    /* What the HTTP client accepts (core/http_client.c): plain http with a host. */
    return h2o_url_parse(v, strlen(v), &url) == 0 && url.scheme == &H2O_URL_SCHEME_HTTP && url.host.len > 0 ? 0 : -1;
}

/* Parses v into the setting's field; on failure writes what was expected to err. */
static int parse(const setting_t *s, const char *v, os_config_t *cfg, char *err, size_t errlen)
{
    void *field = (char *)cfg + s->offset;
    long n;
    switch (s->kind) {
    case T_INT:
        if (parse_int(v, s->min, s->max, &n) == 0) {
            *(int *)field = (int)n;
            return 0;
        }
        snprintf(err, errlen, "%s must be an integer between %ld and %ld, got \"%s\"", s->name, s->min, s->max, v);
        return -1;
    case T_BOOL:
        if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || strcmp(v, "0") == 0 || strcmp(v, "false") == 0) {
            *(int *)field = v[0] == '1' || v[0] == 't';
            return 0;
        }
        snprintf(err, errlen, "%s must be 0 or 1, got \"%s\"", s->name, v);
        return -1;
    case T_STR:
        if (strlen(v) < s->size) {
            memcpy(field, v, strlen(v) + 1);
            return 0;
        }
        snprintf(err, errlen, "%s is too long (at most %zu bytes)", s->name, s->size - 1);
        return -1;
    case T_URL:
        if (strlen(v) < s->size && parse_url(v) == 0) {
            memcpy(field, v, strlen(v) + 1);
            return 0;
        }
        snprintf(err, errlen, "%s must be an http:// URL with a host (at most %zu bytes), got \"%.200s\"", s->name,
                 s->size - 1, v);
        return -1;
    case T_LEVEL:
        if ((*(int *)field = os_log_parse_level(v)) >= 0)
            return 0;
        snprintf(err, errlen, "%s must be one of debug, info, warn, error, got \"%s\"", s->name, v);
        return -1;
    case T_MONEY:
        if (os_money_parse(v, strlen(v), field) == 0 && *(int64_t *)field >= 0)
            return 0;
        snprintf(err, errlen, "%s must be an amount like 50.00, got \"%s\"", s->name, v);
        return -1;
    case T_RATE:
        if (os_money_parse_ppm(v, strlen(v), field) == 0 && *(int64_t *)field >= 0 && *(int64_t *)field <= 1000000)
            return 0;
        snprintf(err, errlen, "%s must be a rate between 0 and 1 like 0.05, got \"%s\"", s->name, v);
        return -1;
    case T_FRACTION: {
        char *end;
        errno = 0;
        double d = strtod(v, &end);
        if (errno == 0 && end != v && *end == '\0' && isfinite(d) && d >= 0 && d <= 1) {
            *(double *)field = d;
            return 0;
        }
        snprintf(err, errlen, "%s must be a number between 0 and 1 like 0.1, got \"%s\"", s->name, v);
        return -1;
    }
    }
    return -1;
}

int os_config_load(os_config_t *cfg, char *err, size_t errlen)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    char workers[16];
    snprintf(workers, sizeof(workers), "%ld", ncpu < 1 ? 1 : ncpu > 256 ? 256 : ncpu);
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
        const setting_t *s = &settings[i];
        const char *v = getenv(s->name);
        if (v == NULL || *v == '\0') /* unset and empty both mean the default */
            v = s->def != NULL ? s->def : workers;
        if (parse(s, v, cfg, err, errlen) != 0)
            return -1;
    }
    if (cfg->outbox_backoff_max_ms < cfg->outbox_backoff_base_ms) {
        snprintf(err, errlen, "OUTBOX_BACKOFF_MAX_MS (%d) must not be below OUTBOX_BACKOFF_BASE_MS (%d)",
                 cfg->outbox_backoff_max_ms, cfg->outbox_backoff_base_ms);
        return -1;
    }
    if (strcmp(cfg->env, "production") != 0 && strcmp(cfg->env, "development") != 0) {
        snprintf(err, errlen, "ORDERSERVICE_ENV must be production or development, got \"%s\"", cfg->env);
        return -1;
    }
    cfg->development = strcmp(cfg->env, "development") == 0;
    /* The server takes its algorithm from its one key; two keys would make that ambiguous. */
    if (cfg->jwt_secret[0] != '\0' && cfg->jwt_public_key_file[0] != '\0') {
        snprintf(err, errlen, "set JWT_SECRET or JWT_PUBLIC_KEY_FILE, not both");
        return -1;
    }
    /* RFC 7518 3.2: an HS256 key at least as long as the hash (256 bits) */
    if (cfg->jwt_secret[0] != '\0' && strlen(cfg->jwt_secret) < 32) {
        snprintf(err, errlen, "JWT_SECRET must be at least 32 bytes, got %zu", strlen(cfg->jwt_secret));
        return -1;
    }
    return 0;
}

void os_config_push_lua(lua_State *L, const os_config_t *cfg)
{
    static const char *const level_names[] = {"debug", "info", "warn", "error"};
    lua_createtable(L, 0, (int)(sizeof(settings) / sizeof(settings[0])));
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
        const setting_t *s = &settings[i];
        const void *field = (const char *)cfg + s->offset;
        if (!s->lua)
            continue;
        switch (s->kind) {
        case T_INT: lua_pushinteger(L, *(const int *)field); break;
        case T_BOOL: lua_pushboolean(L, *(const int *)field); break;
        case T_STR:
        case T_URL: lua_pushstring(L, field); break;
        case T_LEVEL: lua_pushstring(L, level_names[*(const int *)field]); break;
        case T_FRACTION: lua_pushnumber(L, *(const double *)field); break;
        /* Exact integers, named for their unit so nobody mistakes cents for an amount. */
        case T_MONEY: lua_pushfstring(L, "%s_CENTS", s->name); lua_pushnumber(L, (lua_Number)*(const int64_t *)field);
            lua_rawset(L, -3);
            continue;
        case T_RATE: lua_pushfstring(L, "%s_PPM", s->name); lua_pushnumber(L, (lua_Number)*(const int64_t *)field);
            lua_rawset(L, -3);
            continue;
        }
        lua_setfield(L, -2, s->name);
    }
}
