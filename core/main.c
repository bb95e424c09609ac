/*
 * main.c - the orderservice program: parses the command line and the environment, then
 * serves, migrates or seeds. Everything else lives in the core library.
 */
#include "config.h"
#include "db.h"
#include "log.h"
#include "migrate.h"
#include "server.h"
#include "version.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: orderservice [serve|migrate|seed] [--help] [--version]\n"
    "\n"
    "  serve     answer HTTP requests (the default)\n"
    "  migrate   apply pending migrations from MIGRATIONS_DIR (./sql/migrations)\n"
    "  seed      load SEED_DIR/eci_orders.csv and eci_order_items.csv into an empty database\n"
    "\n"
    "environment:\n"
    "  PORT (8001)  HOST (0.0.0.0)  WORKERS (CPUs)  ROUTES_FILE (./routes.lua)\n"
    "  SCRIPTS_DIR (./scripts)  LOG_LEVEL (info: debug|info|warn|error)\n"
    "  DATABASE_URL  DB_POOL_SIZE (8 per worker)  DB_ACQUIRE_TIMEOUT_MS (2000)\n"
    "  DB_STATEMENT_TIMEOUT_MS (30000)  MIGRATE_ON_START (0)  SHUTDOWN_TIMEOUT_MS (10000)\n"
    "  TAX_RATE (0.05)  SHIPPING_FEE (50.00)\n";

static PGconn *connect_or_log(void)
{
    if (os_config.database_url[0] == '\0') {
        os_log(OS_LOG_ERROR, "DATABASE_URL is not set");
        return NULL;
    }
    PGconn *conn = PQconnectdb(os_config.database_url);
    if (PQstatus(conn) != CONNECTION_OK) {
        os_log(OS_LOG_ERROR, "cannot connect to the database: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

static int migrate(void)
{
    char err[1024];
    int applied = 0;
    PGconn *conn = connect_or_log();
    if (conn == NULL)
        return -1;
    int rc = os_migrate_run(conn, os_config.migrations_dir, &applied, err, sizeof(err));
    PQfinish(conn);
    if (rc != 0) {
        os_log(OS_LOG_ERROR, "migration failed: %s", err);
        return -1;
    }
    os_log(OS_LOG_INFO, "migrations applied: %d", applied);
    return 0;
}

static int seed(void)
{
    char err[1024];
    int orders = 0, items = 0;
    PGconn *conn = connect_or_log();
    if (conn == NULL)
        return -1;
    int rc = os_seed_run(conn, os_config.seed_dir, &orders, &items, err, sizeof(err));
    PQfinish(conn);
    if (rc != 0) {
        os_log(OS_LOG_ERROR, "seeding failed: %s", err);
        return -1;
    }
    os_log(OS_LOG_INFO, "seeded %d orders and %d items", orders, items);
    return 0;
}

int main(int argc, char **argv)
{
    const char *command = "serve";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("orderservice %s\n", OS_VERSION);
            return 0;
        } else if (i == 1 && argv[i][0] != '-') {
            command = argv[i];
        } else {
            fprintf(stderr, "orderservice: unknown argument \"%s\"\n%s", argv[i], usage);
            return 2;
        }
    }

    char err[512];
    if (os_config_load(&os_config, err, sizeof(err)) != 0) {
        fprintf(stderr, "orderservice: %s\n", err);
        return 2;
    }
    os_log_set_level(os_config.log_level);

    if (strcmp(command, "migrate") == 0)
        return migrate() == 0 ? 0 : 1;
    if (strcmp(command, "seed") == 0)
        return seed() == 0 ? 0 : 1;
    if (strcmp(command, "serve") != 0) {
        fprintf(stderr, "orderservice: unknown command \"%s\"\n%s", command, usage);
        return 2;
    }
    if (os_config.database_url[0] != '\0' && os_db_url_check(os_config.database_url, err, sizeof(err)) != 0) {
        fprintf(stderr, "orderservice: %s\n", err);
        return 2;
    }
    /* The service starts even when the database is down: requests get 503 until it is back. */
    if (os_config.migrate_on_start && migrate() != 0)
        os_log(OS_LOG_ERROR, "starting without migrations; run `orderservice migrate` once the database is reachable");
    return os_server_run();
}
