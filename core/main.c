/*
 * main.c - the orderservice program: parses the command line and the environment, then
 * serves, migrates or seeds. Everything else lives in the core library.
 */
#include "check.h"
#include "config.h"
#include "db.h"
#include "jwt.h"
#include "log.h"
#include "migrate.h"
#include "random.h"
#include "server.h"
#include "version.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage[] =
    "usage: orderservice [serve|migrate|seed|check|token ...] [--help] [--version]\n"
    "\n"
    "  serve     answer HTTP requests (the default)\n"
    "  migrate   apply pending migrations from MIGRATIONS_DIR (./sql/migrations)\n"
    "  seed      load SEED_DIR/eci_orders.csv and eci_order_items.csv into an empty database\n"
    "  check     validate ROUTES_FILE, every filter's options and every handler; exit 0 or 1\n"
    "  token --sub S [--role admin|service|customer] [--customer-id N] [--ttl SECONDS]\n"
    "            print an HS256 token signed with JWT_SECRET (iss/aud from JWT_ISSUER/JWT_AUDIENCE)\n"
    "\n"
    "environment:\n"
    "  PORT (8001)  HOST (0.0.0.0)  WORKERS (CPUs)  ROUTES_FILE (./routes.lua)\n"
    "  SCRIPTS_DIR (./scripts)  LOG_LEVEL (info: debug|info|warn|error)\n"
    "  DATABASE_URL  DB_POOL_SIZE (4 per worker)  DB_ACQUIRE_TIMEOUT_MS (2000)\n"
    "  DB_STATEMENT_TIMEOUT_MS (30000)  MIGRATE_ON_START (0)  SHUTDOWN_TIMEOUT_MS (10000)\n"
    "  TAX_RATE (0.05)  SHIPPING_FEE (50.00)\n"
    "  JWT_SECRET | JWT_PUBLIC_KEY_FILE  JWT_ISSUER  JWT_AUDIENCE\n"
    "  ORDERSERVICE_ENV (production | development: serving without a key is allowed)\n"
    "  ... every setting: README.md, \"Configuration\"\n"
    "\n"
    "exit status: 0 stopped cleanly; 1 failed (the port is held by another process, the scripts\n"
    "do not load, a migration failed); 2 bad usage or a bad setting (the message names it)\n";

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

/* True when s can sit between JSON quotes as it is (no quote, backslash or control character). */
static int plain_json_string(const char *s)
{
    for (const char *p = s; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            return 0;
    return 1;
}

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* `orderservice token`: what make run, the tests and operators use to get a development token. */
static int token(int argc, char **argv)
{
    const char *sub = NULL, *role = "customer", *customer_id = NULL;
    long ttl = 3600, id = 0;
    for (int i = 2; i < argc; i++) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        if (val == NULL) {
            fprintf(stderr, "orderservice token: %s needs a value\n", opt);
            return 2;
        }
        i++;
        if (strcmp(opt, "--sub") == 0)
            sub = val;
        else if (strcmp(opt, "--role") == 0)
            role = val;
        else if (strcmp(opt, "--customer-id") == 0)
            customer_id = val;
        else if (strcmp(opt, "--ttl") == 0) {
            if (parse_long(val, 1, 366L * 24 * 3600, &ttl) != 0) {
                fprintf(stderr, "orderservice token: --ttl must be seconds between 1 and 31622400\n");
                return 2;
            }
        } else {
            fprintf(stderr, "orderservice token: unknown option \"%s\"\n%s", opt, usage);
            return 2;
        }
    }
    if (sub == NULL || *sub == '\0' || strlen(sub) > 256 || !plain_json_string(sub)) {
        fprintf(stderr, "orderservice token: --sub is required (plain text, at most 256 bytes)\n");
        return 2;
    }
    if (strcmp(role, "admin") != 0 && strcmp(role, "service") != 0 && strcmp(role, "customer") != 0) {
        fprintf(stderr, "orderservice token: --role must be admin, service or customer\n");
        return 2;
    }
    if (customer_id != NULL && parse_long(customer_id, 1, 9007199254740991L, &id) != 0) {
        fprintf(stderr, "orderservice token: --customer-id must be a positive integer\n");
        return 2;
    }
    if (os_config.jwt_secret[0] == '\0') {
        fprintf(stderr, "orderservice token: JWT_SECRET is not set (with JWT_PUBLIC_KEY_FILE, tokens come from "
                        "the identity provider that holds the private key)\n");
        return 2;
    }
    if (!plain_json_string(os_config.jwt_issuer) || !plain_json_string(os_config.jwt_audience)) {
        fprintf(stderr, "orderservice token: JWT_ISSUER and JWT_AUDIENCE must be plain text\n");
        return 2;
    }
    char payload[1024], tok[2048], err[256];
    long now = (long)time(NULL);
    int n = snprintf(payload, sizeof(payload), "{\"sub\":\"%s\",\"role\":\"%s\",\"iat\":%ld,\"exp\":%ld", sub, role,
                     now, now + ttl);
    if (customer_id != NULL)
        n += snprintf(payload + n, sizeof(payload) - (size_t)n, ",\"customer_id\":%ld", id);
    if (os_config.jwt_issuer[0] != '\0')
        n += snprintf(payload + n, sizeof(payload) - (size_t)n, ",\"iss\":\"%s\"", os_config.jwt_issuer);
    if (os_config.jwt_audience[0] != '\0')
        n += snprintf(payload + n, sizeof(payload) - (size_t)n, ",\"aud\":\"%s\"", os_config.jwt_audience);
    n += snprintf(payload + n, sizeof(payload) - (size_t)n, "}");
    if (os_jwt_setup(err, sizeof(err)) != 0 ||
        os_jwt_sign_hs256(os_jwt_process_key(), payload, (size_t)n, tok, sizeof(tok), NULL) != 0) {
        fprintf(stderr, "orderservice token: cannot sign\n");
        return 1;
    }
    puts(tok);
    return 0;
}

int main(int argc, char **argv)
{
    const char *command = "serve";
    if (argc > 1 && strcmp(argv[1], "token") == 0)
        command = "token";
    for (int i = 1; i < argc && strcmp(command, "token") != 0; i++) {
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

    /* Our code draws from os_random_*; libc's rand() is seeded too, for any library that calls it. */
    os_random_seed_libc();
    char err[512];
    if (os_config_load(&os_config, err, sizeof(err)) != 0) {
        fprintf(stderr, "orderservice: %s\n", err);
        return 2;
    }
    os_log_set_level(os_config.log_level);

    if (strcmp(command, "token") == 0)
        return token(argc, argv);
    if (strcmp(command, "check") == 0)
        return os_check_run() == 0 ? 0 : 1;
    if (strcmp(command, "migrate") == 0)
        return migrate() == 0 ? 0 : 1;
    if (strcmp(command, "seed") == 0)
        return seed() == 0 ? 0 : 1;
    if (strcmp(command, "serve") != 0) {
        fprintf(stderr, "orderservice: unknown command \"%s\"\n%s", command, usage);
        return 2;
    }
    if (os_jwt_setup(err, sizeof(err)) != 0) {
        fprintf(stderr, "orderservice: %s\n", err);
        return 2;
    }
    if (os_jwt_process_key() == NULL) {
        if (!os_config.development) {
            fprintf(stderr, "orderservice: set JWT_SECRET or JWT_PUBLIC_KEY_FILE (or ORDERSERVICE_ENV=development "
                            "to serve without a key, where every token is refused)\n");
            return 2;
        }
        os_log(OS_LOG_WARN, "no JWT_SECRET or JWT_PUBLIC_KEY_FILE: every authenticated route answers 401");
    }
    if ((os_config.database_url[0] != '\0' &&
         os_db_url_check("DATABASE_URL", os_config.database_url, err, sizeof(err)) != 0) ||
        (os_config.database_read_url[0] != '\0' &&
         os_db_url_check("DATABASE_READ_URL", os_config.database_read_url, err, sizeof(err)) != 0)) {
        fprintf(stderr, "orderservice: %s\n", err);
        return 2;
    }
    if (os_config.database_read_url[0] != '\0' && os_config.database_url[0] == '\0') {
        fprintf(stderr, "orderservice: DATABASE_READ_URL needs DATABASE_URL (every write and most reads go there)\n");
        return 2;
    }
    /* The service starts even when the database is down: requests get 503 until it is back. */
    if (os_config.migrate_on_start && migrate() != 0)
        os_log(OS_LOG_ERROR, "starting without migrations; run `orderservice migrate` once the database is reachable");
    return os_server_run();
}
