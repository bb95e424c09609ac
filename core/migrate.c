/*
 * migrate.c - schema migrations and the one-off legacy seed.
 *
 * Owns the schema_migrations table and how sql/migrations/NNNN_*.sql are applied: in name
 * order, each file in its own transaction together with the row recording it (version = the
 * NNNN prefix), so a file is either applied and recorded or neither. Files must therefore not
 * contain transaction control or CREATE INDEX CONCURRENTLY. Replicas starting together
 * serialise on a session advisory lock (OS_MIGRATE_LOCK_KEY); the later ones find nothing to do.
 *
 * Also owns loading the legacy Django export (eci_orders.csv, eci_order_items.csv) into an
 * empty database, mapping the old vocabulary to ours:
 *   order_status    CREATED -> PENDING; CANCELLED, DELIVERED unchanged
 *   payment_status  SUCCESS -> PAID; FAILED unchanged
 *   shipping_status 'Delivered' for DELIVERED orders, else 'Unknown'
 *   created_at      the CSV's naive timestamps are UTC; updated_at = created_at
 * Ids and totals are kept; subtotal/tax/shipping_fee stay NULL; both sequences move past the
 * loaded ids. No order_events rows are written: an order's history starts with its first change
 * made through the service.
 *
 * Blocking libpq on purpose: used only by the CLI (`orderservice migrate`, `orderservice seed`)
 * and at start-up before any worker runs. The directories are the caller's (config / CLI).
 */
#include "migrate.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VERSION_LEN 4 /* the NNNN of NNNN_name.sql */
#define PATH_LEN 4096

/* ---- errors ---- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* "what: SQLSTATE message (first line of context)", or libpq's own message when the server
 * sent none (connection lost, unexpected result). */
static void set_pg_err(char *err, size_t errlen, PGconn *conn, const PGresult *res, const char *what)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *ctx = res ? PQresultErrorField(res, PG_DIAG_CONTEXT) : NULL;

    if (msg != NULL) {
        set_err(err, errlen, "%s: %s %s%s%.*s%s", what, state ? state : "", msg, ctx ? " (" : "",
                ctx ? (int)strcspn(ctx, "\n") : 0, ctx ? ctx : "", ctx ? ")" : "");
        return;
    }
    msg = PQerrorMessage(conn);
    if (*msg == '\0')
        msg = res ? PQresStatus(PQresultStatus(res)) : "no result";
    set_err(err, errlen, "%s: %.*s", what, (int)strcspn(msg, "\n"), msg);
}

/* ---- small libpq helpers ---- */

/* Run fixed SQL (one statement or several); 0 if it succeeded. */
static int exec_sql(PGconn *conn, const char *sql, const char *what, char *err, size_t errlen)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;

    if (!ok)
        set_pg_err(err, errlen, conn, res, what);
    PQclear(res);
    return ok ? 0 : -1;
}

/* Run fixed SQL with one text parameter; 0 ok. *ntuples_out (if given) = rows returned. */
static int exec_param(PGconn *conn, const char *sql, const char *param, int *ntuples_out,
                      const char *what, char *err, size_t errlen)
{
    PGresult *res = PQexecParams(conn, sql, 1, NULL, &param, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;

    if (!ok)
        set_pg_err(err, errlen, conn, res, what);
    else if (ntuples_out != NULL)
        *ntuples_out = PQntuples(res);
    PQclear(res);
    return ok ? 0 : -1;
}

/* Leave a transaction we may have left open or aborted; a no-op when idle. */
static void rollback_if_open(PGconn *conn)
{
    PGTransactionStatusType ts = PQtransactionStatus(conn);

    if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR)
        PQclear(PQexec(conn, "ROLLBACK"));
}

/* Both entry points open their own transactions, so they need an idle connection. */
static int check_conn(PGconn *conn, char *err, size_t errlen)
{
    if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
        set_err(err, errlen, "not connected to the database");
        return -1;
    }
    if (PQtransactionStatus(conn) != PQTRANS_IDLE) {
        set_err(err, errlen, "connection is busy or inside a transaction");
        return -1;
    }
    return 0;
}

/* ---- files ---- */

/* Whole file as a NUL-terminated string the caller frees; NULL on error. */
static char *read_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    size_t cap = 16384, len = 0, got;
    char *buf, *bigger;

    if (f == NULL) {
        set_err(err, errlen, "open %s: %s", path, strerror(errno));
        return NULL;
    }
    buf = malloc(cap);
    while (buf != NULL) {
        if (cap - len < 4096) {
            bigger = realloc(buf, cap * 2);
            if (bigger == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        got = fread(buf + len, 1, cap - len - 1, f);
        if (got == 0)
            break;
        len += got;
    }
    if (buf == NULL) {
        set_err(err, errlen, "read %s: out of memory", path);
    } else if (ferror(f)) {
        set_err(err, errlen, "read %s: %s", path, strerror(errno));
        free(buf);
        buf = NULL;
    } else {
        buf[len] = '\0';
        if (strlen(buf) != len) {
            set_err(err, errlen, "read %s: file contains a NUL byte", path);
            free(buf);
            buf = NULL;
        }
    }
    fclose(f);
    return buf;
}

static int join_path(char *out, const char *dir, const char *name, char *err, size_t errlen)
{
    int n = snprintf(out, PATH_LEN, "%s/%s", dir, name);

    if (n < 0 || n >= PATH_LEN) {
        set_err(err, errlen, "path too long: %s/%s", dir, name);
        return -1;
    }
    return 0;
}

/* ---- migrations ---- */

/* NNNN_<anything>.sql */
static int is_migration_name(const char *name)
{
    size_t len = strlen(name);

    for (int i = 0; i < VERSION_LEN; i++)
        if (name[i] < '0' || name[i] > '9')
            return 0;
    return len > VERSION_LEN + 4 && name[VERSION_LEN] == '_' && strcmp(name + len - 4, ".sql") == 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Sorted migration file names in dir; two files with one number is an error. */
static int list_migrations(const char *dir, char ***names_out, size_t *n_out, char *err,
                           size_t errlen)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **names = NULL, **bigger;
    size_t n = 0, cap = 0;
    int rc = 0;

    if (d == NULL) {
        set_err(err, errlen, "open migrations dir %s: %s", dir, strerror(errno));
        return -1;
    }
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (!is_migration_name(e->d_name))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            bigger = realloc(names, cap * sizeof *names);
            if (bigger == NULL) {
                rc = -1;
                break;
            }
            names = bigger;
        }
        if ((names[n] = strdup(e->d_name)) == NULL)
            rc = -1;
        else
            n++;
    }
    closedir(d);
    if (rc != 0) {
        set_err(err, errlen, "list %s: out of memory", dir);
    } else if (n > 0) {
        qsort(names, n, sizeof *names, cmp_names);
        for (size_t i = 1; i < n && rc == 0; i++) {
            if (strncmp(names[i - 1], names[i], VERSION_LEN) == 0) {
                set_err(err, errlen, "two migrations share a number: %s, %s", names[i - 1], names[i]);
                rc = -1;
            }
        }
    }
    if (rc != 0) {
        free_names(names, n);
        return -1;
    }
    *names_out = names;
    *n_out = n;
    return 0;
}

/* Apply one file unless its version is recorded; counts it in *applied when applied.
 * client_min_messages is raised so "already exists, skipping" notices stay quiet. */
static int apply_one(PGconn *conn, const char *dir, const char *name, int *applied, char *err,
                     size_t errlen)
{
    char version[VERSION_LEN + 1], path[PATH_LEN], what[300];
    char *sql;
    int found = 0, rc = -1;

    memcpy(version, name, VERSION_LEN);
    version[VERSION_LEN] = '\0';
    if (exec_param(conn, "SELECT 1 FROM schema_migrations WHERE version = $1", version, &found,
                   "check schema_migrations", err, errlen) != 0)
        return -1;
    if (found > 0)
        return 0;

    if (join_path(path, dir, name, err, errlen) != 0 || (sql = read_file(path, err, errlen)) == NULL)
        return -1;
    snprintf(what, sizeof what, "apply %.250s", name);

    if (exec_sql(conn, "BEGIN; SET LOCAL client_min_messages = warning", what, err, errlen) == 0 &&
        exec_sql(conn, sql, what, err, errlen) == 0) {
        if (PQtransactionStatus(conn) != PQTRANS_INTRANS)
            set_err(err, errlen, "%s: the file ended the runner's transaction (no BEGIN/COMMIT "
                                 "in migrations)", what);
        else if (exec_param(conn, "INSERT INTO schema_migrations (version) VALUES ($1)", version,
                            NULL, what, err, errlen) == 0 &&
                 exec_sql(conn, "COMMIT", what, err, errlen) == 0)
            rc = 0;
    }
    if (rc == 0)
        (*applied)++;
    else
        rollback_if_open(conn);
    free(sql);
    return rc;
}

int os_migrate_run(PGconn *conn, const char *dir, int *applied_out, char *err, size_t errlen)
{
    char **names = NULL;
    size_t n = 0;
    int applied = 0, rc = -1;

    if (applied_out != NULL)
        *applied_out = 0;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (dir == NULL) {
        set_err(err, errlen, "no migrations dir given");
        return -1;
    }
    if (check_conn(conn, err, errlen) != 0 || list_migrations(dir, &names, &n, err, errlen) != 0)
        return -1;

    /* blocks while another replica migrates; released below or when the session ends */
    if (exec_param(conn, "SELECT pg_advisory_lock($1::bigint)", OS_MIGRATE_LOCK_KEY, NULL,
                   "take migration lock", err, errlen) != 0) {
        free_names(names, n);
        return -1;
    }
    if (exec_sql(conn,
                 "BEGIN; SET LOCAL client_min_messages = warning;"
                 "CREATE TABLE IF NOT EXISTS schema_migrations ("
                 "  version text PRIMARY KEY,"
                 "  applied_at timestamptz NOT NULL DEFAULT now());"
                 "COMMIT",
                 "create schema_migrations", err, errlen) == 0) {
        rc = 0;
        for (size_t i = 0; i < n && rc == 0; i++)
            rc = apply_one(conn, dir, names[i], &applied, err, errlen);
    }
    rollback_if_open(conn);

    /* keep the first error's message if there was one */
    if (exec_param(conn, "SELECT pg_advisory_unlock($1::bigint)", OS_MIGRATE_LOCK_KEY, NULL,
                   "release migration lock", rc == 0 ? err : NULL, errlen) != 0)
        rc = -1;
    free_names(names, n);
    if (applied_out != NULL)
        *applied_out = applied;
    return rc;
}

/* ---- seed ---- */

/* Column names match the CSV headers, which HEADER MATCH checks. created_at stays text until
 * the INSERT decides how to read it. */
static const char SEED_TEMP_TABLES[] =
    "CREATE TEMP TABLE seed_orders ("
    "  order_id bigint, customer_id bigint, order_status text, payment_status text,"
    "  order_total numeric, created_at text) ON COMMIT DROP;"
    "CREATE TEMP TABLE seed_items ("
    "  order_item_id bigint, order_id bigint, product_id bigint, sku text,"
    "  quantity integer, unit_price numeric) ON COMMIT DROP";

/* Statuses other than the mapped ones pass through; the CHECK constraints refuse any the
 * service does not know, which fails the whole seed. */
static const char SEED_INSERT_ORDERS[] =
    "INSERT INTO ordersapp_order (order_id, customer_id, order_status, payment_status,"
    "                             shipping_status, order_total, created_at, updated_at)"
    " SELECT order_id, customer_id,"
    "        CASE order_status WHEN 'CREATED' THEN 'PENDING' ELSE order_status END,"
    "        CASE payment_status WHEN 'SUCCESS' THEN 'PAID' ELSE payment_status END,"
    "        CASE order_status WHEN 'DELIVERED' THEN 'Delivered' ELSE 'Unknown' END,"
    "        order_total,"
    "        created_at::timestamp AT TIME ZONE 'UTC',"
    "        created_at::timestamp AT TIME ZONE 'UTC'"
    "   FROM seed_orders ORDER BY order_id";

static const char SEED_INSERT_ITEMS[] =
    "INSERT INTO ordersapp_orderitem (order_item_id, order_id, product_id, sku, quantity,"
    "                                 unit_price)"
    " SELECT order_item_id, order_id, product_id, sku, quantity, unit_price"
    "   FROM seed_items ORDER BY order_item_id";

/* Next ids come after the loaded ones; GREATEST with last_value never moves a sequence back. */
static const char SEED_SETVAL[] =
    "SELECT setval('ordersapp_order_order_id_seq',"
    "              GREATEST((SELECT max(order_id) FROM ordersapp_order),"
    "                       (SELECT last_value FROM ordersapp_order_order_id_seq))),"
    "       setval('ordersapp_orderitem_order_item_id_seq',"
    "              GREATEST((SELECT max(order_item_id) FROM ordersapp_orderitem),"
    "                       (SELECT last_value FROM ordersapp_orderitem_order_item_id_seq)))";

/* Stream one CSV file into COPY ... FROM STDIN. The file is opened first so that a missing
 * file never leaves the connection in COPY state. */
static int copy_file(PGconn *conn, const char *copy_sql, const char *path, char *err, size_t errlen)
{
    char buf[65536];
    const char *abort_msg = NULL;
    FILE *f = fopen(path, "rb");
    PGresult *res;
    size_t got;
    int rc = 0;

    if (f == NULL) {
        set_err(err, errlen, "open %s: %s", path, strerror(errno));
        return -1;
    }
    res = PQexec(conn, copy_sql);
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        set_pg_err(err, errlen, conn, res, path);
        PQclear(res);
        fclose(f);
        return -1;
    }
    PQclear(res);

    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        if (PQputCopyData(conn, buf, (int)got) != 1) {
            set_pg_err(err, errlen, conn, NULL, path);
            rc = -1;
            break;
        }
    }
    if (ferror(f))
        abort_msg = "could not read the seed file";
    fclose(f);
    if (PQputCopyEnd(conn, abort_msg) != 1 && rc == 0) {
        set_pg_err(err, errlen, conn, NULL, path);
        rc = -1;
    }
    while ((res = PQgetResult(conn)) != NULL) { /* the COPY's result, then NULL */
        if (PQresultStatus(res) != PGRES_COMMAND_OK && rc == 0) {
            set_pg_err(err, errlen, conn, res, path);
            rc = -1;
        }
        PQclear(res);
    }
    return rc;
}

/* Run an INSERT; *rows_out = rows inserted. */
static int insert_rows(PGconn *conn, const char *sql, const char *what, int *rows_out, char *err,
                       size_t errlen)
{
    PGresult *res = PQexec(conn, sql);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;

    if (ok)
        *rows_out = atoi(PQcmdTuples(res));
    else
        set_pg_err(err, errlen, conn, res, what);
    PQclear(res);
    return ok ? 0 : -1;
}

int os_seed_run(PGconn *conn, const char *seed_dir, int *orders_out, int *items_out, char *err,
                size_t errlen)
{
    char orders_path[PATH_LEN], items_path[PATH_LEN];
    PGresult *res;
    int orders = 0, items = 0, has_orders;

    if (orders_out != NULL)
        *orders_out = 0;
    if (items_out != NULL)
        *items_out = 0;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (seed_dir == NULL) {
        set_err(err, errlen, "no seed dir given");
        return -1;
    }
    if (check_conn(conn, err, errlen) != 0 ||
        join_path(orders_path, seed_dir, "eci_orders.csv", err, errlen) != 0 ||
        join_path(items_path, seed_dir, "eci_order_items.csv", err, errlen) != 0)
        return -1;

    /* SHARE ROW EXCLUSIVE conflicts with itself and with writers but not with readers: a second
     * seeder waits here, then finds the first one's orders and loads nothing. */
    if (exec_sql(conn, "BEGIN", "seed", err, errlen) != 0 ||
        exec_sql(conn, "LOCK TABLE ordersapp_order IN SHARE ROW EXCLUSIVE MODE", "seed: lock",
                 err, errlen) != 0)
        goto fail;

    res = PQexec(conn, "SELECT 1 FROM ordersapp_order LIMIT 1");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        set_pg_err(err, errlen, conn, res, "seed: look for orders");
        PQclear(res);
        goto fail;
    }
    has_orders = PQntuples(res) > 0;
    PQclear(res);
    if (has_orders) {
        if (exec_sql(conn, "COMMIT", "seed: commit", err, errlen) != 0)
            goto fail;
        return 0;
    }

    if (exec_sql(conn, SEED_TEMP_TABLES, "seed: temp tables", err, errlen) != 0 ||
        copy_file(conn, "COPY seed_orders FROM STDIN WITH (FORMAT csv, HEADER MATCH)", orders_path,
                  err, errlen) != 0 ||
        copy_file(conn, "COPY seed_items FROM STDIN WITH (FORMAT csv, HEADER MATCH)", items_path,
                  err, errlen) != 0 ||
        insert_rows(conn, SEED_INSERT_ORDERS, "seed: insert orders", &orders, err, errlen) != 0 ||
        insert_rows(conn, SEED_INSERT_ITEMS, "seed: insert items", &items, err, errlen) != 0 ||
        exec_sql(conn, SEED_SETVAL, "seed: move sequences", err, errlen) != 0 ||
        exec_sql(conn, "COMMIT", "seed: commit", err, errlen) != 0)
        goto fail;

    if (orders_out != NULL)
        *orders_out = orders;
    if (items_out != NULL)
        *items_out = items;
    return 0;

fail:
    rollback_if_open(conn);
    return -1;
}
