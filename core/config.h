/*
 * config.h - the service's settings, read once from the environment at start; the scripts
 * see them as require("lib.config"). README's "Configuration" table lists them all.
 */
#ifndef OS_CONFIG_H
#define OS_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

typedef struct os_config {
    char host[256];
    int port;
    int workers;
    char routes_file[1024];
    char scripts_dir[1024]; /* directory holding lib/, handlers/, filters/ */
    int log_level;
    int access_log_buffer_bytes; /* each worker's access log buffer; 0: every line written at once */
    int access_log_flush_ms;     /* the longest a buffered access log line waits */
    char database_url[2048]; /* empty: no database configured */
    int db_pool_size;
    int db_acquire_timeout_ms;
    int db_statement_timeout_ms;
    int db_connect_timeout_ms; /* bounds one name resolution or one connection attempt */
    int db_pipeline_depth;     /* named autocommit statements one connection carries at once; 0: off */
    char database_read_url[2048]; /* a read replica for list, details and history; empty: none */
    int read_max_lag_ms;          /* a replica further behind than this serves no reads */
    int migrate_on_start;
    char migrations_dir[1024];
    char seed_dir[1024];
    char static_dir[1024];     /* STATIC_DIR: served at /static/ (the My Orders page's assets) */
    char swagger_ui_dir[1024]; /* SWAGGER_UI_DIR: swagger-ui-dist, served at /orders-doc/ui/ */
    int shutdown_timeout_ms;
    int shutdown_ready_delay_ms; /* SIGTERM: readiness answers 503 this long before the listener closes */
    int downstream_timeout_ms;
    int downstream_pool_size;
    int jobs; /* run routes.lua's background jobs (on worker 0 or every worker, as it says) */
    int reload_poll_ms; /* watch the scripts for changes this often; 0: only on SIGHUP */
    int64_t tax_ppm;        /* TAX_RATE as parts per million */
    int64_t shipping_cents; /* SHIPPING_FEE in cents */
    /* Read only by the scripts (through lib.config); validated here all the same. */
    char inventory_service_url[1024]; /* empty: not configured */
    char payment_service_url[1024];
    char shipping_service_url[1024];
    char notification_service_url[1024];
    int breaker_failures;
    int breaker_cooldown_ms;
    int outbox_every_ms;
    int outbox_backoff_base_ms;
    int outbox_backoff_max_ms;
    int saga_recovery_every_ms;
    int saga_grace_ms;
    int outbox_lease_ms;     /* how long a claimed outbox row is its replica's */
    int outbox_concurrency;  /* outbox rows one job runner delivers at once */
    int reconcile_window_ms; /* how long an unconfirmed refund is retried before a person is asked */
    int standin_latency_ms;
    double standin_failure_rate;
    int standin_call_log; /* calls the stand-ins keep for /_calls */
    int luajit_off;
    /* authentication (core/jwt.c): one key, and the algorithm follows from it */
    char jwt_secret[1024];          /* JWT_SECRET: HS256, at least 32 bytes; empty: unset */
    char jwt_public_key_file[1024]; /* JWT_PUBLIC_KEY_FILE: PEM, RS256 or ES256; empty: unset */
    char jwt_issuer[256];           /* JWT_ISSUER: required iss; empty: not checked */
    char jwt_audience[256];         /* JWT_AUDIENCE: required in aud; empty: not checked */
    char env[16];    /* ORDERSERVICE_ENV: production or development */
    int development; /* ORDERSERVICE_ENV=development: may serve without a key (every token refused) */
} os_config_t;

/** Fills cfg from the environment; on a bad value writes a message to err and returns -1. */
int os_config_load(os_config_t *cfg, char *err, size_t errlen);

/** Pushes a new table of every setting the scripts may read, keyed by variable name. */
void os_config_push_lua(lua_State *L, const os_config_t *cfg);

/** The configuration of the running process (set once by main before workers start). */
extern os_config_t os_config;

#endif
