/*
 * config.h - the service's settings, read once from the environment at start.
 */
#ifndef OS_CONFIG_H
#define OS_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef struct os_config {
    char host[256];
    int port;
    int workers;
    char routes_file[1024];
    char scripts_dir[1024]; /* directory holding lib/, handlers/, filters/ */
    int log_level;
    char database_url[2048]; /* empty: no database configured */
    int db_pool_size;
    int db_acquire_timeout_ms;
    int db_statement_timeout_ms;
    int db_connect_timeout_ms; /* bounds one name resolution or one connection attempt */
    int migrate_on_start;
    char migrations_dir[1024];
    char seed_dir[1024];
    int shutdown_timeout_ms;
    int downstream_timeout_ms;
    int downstream_pool_size;
    int jobs; /* run background jobs (outbox delivery, recovery) on worker 0 */
    int reload_poll_ms; /* watch the scripts for changes this often; 0: only on SIGHUP */
    int64_t tax_ppm;        /* TAX_RATE as parts per million */
    int64_t shipping_cents; /* SHIPPING_FEE in cents */
} os_config_t;

/** Fills cfg from the environment; on a bad value writes a message to err and returns -1. */
int os_config_load(os_config_t *cfg, char *err, size_t errlen);

/** The configuration of the running process (set once by main before workers start). */
extern os_config_t os_config;

#endif
