/*
 * config.c - parses the environment into os_config_t. Every setting has a default that
 * suits `make run`; a value that does not parse is refused with a message naming the
 * variable, and main exits with status 2, so a typo never silently falls back to a default.
 */
#include "config.h"
#include "log.h"
#include "money.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

os_config_t os_config;

static int env_int(const char *name, int def, int min, int max, int *out, char *err, size_t errlen)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno != 0 || *end != '\0' || n < min || n > max) {
        snprintf(err, errlen, "%s must be an integer between %d and %d, got \"%s\"", name, min, max, v);
        return -1;
    }
    *out = (int)n;
    return 0;
}

static int env_str(const char *name, const char *def, char *out, size_t cap, char *err, size_t errlen)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        v = def;
    if (strlen(v) >= cap) {
        snprintf(err, errlen, "%s is too long (at most %zu bytes)", name, cap - 1);
        return -1;
    }
    strcpy(out, v);
    return 0;
}

static int env_bool(const char *name, int def, int *out, char *err, size_t errlen)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        *out = def;
    else if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0)
        *out = 1;
    else if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0)
        *out = 0;
    else {
        snprintf(err, errlen, "%s must be 0 or 1, got \"%s\"", name, v);
        return -1;
    }
    return 0;
}

static int env_money(const char *name, const char *def, int64_t *out, char *err, size_t errlen)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        v = def;
    if (os_money_parse(v, strlen(v), out) != 0 || *out < 0) {
        snprintf(err, errlen, "%s must be an amount like 50.00, got \"%s\"", name, v);
        return -1;
    }
    return 0;
}

static int env_rate(const char *name, const char *def, int64_t *out, char *err, size_t errlen)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        v = def;
    if (os_money_parse_ppm(v, strlen(v), out) != 0 || *out < 0 || *out > 1000000) {
        snprintf(err, errlen, "%s must be a rate between 0 and 1 like 0.05, got \"%s\"", name, v);
        return -1;
    }
    return 0;
}

int os_config_load(os_config_t *cfg, char *err, size_t errlen)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1)
        ncpu = 1;
    char level[16];
    memset(cfg, 0, sizeof(*cfg));
    if (env_str("HOST", "0.0.0.0", cfg->host, sizeof(cfg->host), err, errlen) != 0 ||
        env_int("PORT", 8001, 1, 65535, &cfg->port, err, errlen) != 0 ||
        env_int("WORKERS", (int)ncpu, 1, 256, &cfg->workers, err, errlen) != 0 ||
        env_str("ROUTES_FILE", "./routes.lua", cfg->routes_file, sizeof(cfg->routes_file), err, errlen) != 0 ||
        env_str("SCRIPTS_DIR", "./scripts", cfg->scripts_dir, sizeof(cfg->scripts_dir), err, errlen) != 0 ||
        env_str("LOG_LEVEL", "info", level, sizeof(level), err, errlen) != 0 ||
        env_str("DATABASE_URL", "", cfg->database_url, sizeof(cfg->database_url), err, errlen) != 0 ||
        env_int("DB_POOL_SIZE", 8, 1, 1000, &cfg->db_pool_size, err, errlen) != 0 ||
        env_int("DB_ACQUIRE_TIMEOUT_MS", 2000, 1, 600000, &cfg->db_acquire_timeout_ms, err, errlen) != 0 ||
        env_int("DB_STATEMENT_TIMEOUT_MS", 30000, 0, 3600000, &cfg->db_statement_timeout_ms, err, errlen) != 0 ||
        env_int("DB_CONNECT_TIMEOUT_MS", 5000, 1, 600000, &cfg->db_connect_timeout_ms, err, errlen) != 0 ||
        env_bool("MIGRATE_ON_START", 0, &cfg->migrate_on_start, err, errlen) != 0 ||
        env_str("MIGRATIONS_DIR", "./sql/migrations", cfg->migrations_dir, sizeof(cfg->migrations_dir), err, errlen) != 0 ||
        env_str("SEED_DIR", "./seed", cfg->seed_dir, sizeof(cfg->seed_dir), err, errlen) != 0 ||
        env_int("SHUTDOWN_TIMEOUT_MS", 10000, 0, 600000, &cfg->shutdown_timeout_ms, err, errlen) != 0 ||
        env_int("DOWNSTREAM_TIMEOUT_MS", 2000, 1, 600000, &cfg->downstream_timeout_ms, err, errlen) != 0 ||
        env_int("DOWNSTREAM_POOL_SIZE", 64, 1, 10000, &cfg->downstream_pool_size, err, errlen) != 0 ||
        env_bool("JOBS", 1, &cfg->jobs, err, errlen) != 0 ||
        env_int("RELOAD_POLL_MS", 1000, 0, 3600000, &cfg->reload_poll_ms, err, errlen) != 0 ||
        env_rate("TAX_RATE", "0.05", &cfg->tax_ppm, err, errlen) != 0 ||
        env_money("SHIPPING_FEE", "50.00", &cfg->shipping_cents, err, errlen) != 0)
        return -1;
    if ((cfg->log_level = os_log_parse_level(level)) < 0) {
        snprintf(err, errlen, "LOG_LEVEL must be one of debug, info, warn, error, got \"%s\"", level);
        return -1;
    }
    return 0;
}
