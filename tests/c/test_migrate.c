/*
 * test_migrate.c - migrations and seed against a real, freshly created, empty database.
 *
 * Environment (all required):
 *   DATABASE_URL    the empty database (the harness creates a new one per run)
 *   MIGRATIONS_DIR  sql/migrations
 *   SEED_DIR        seed (eci_orders.csv, eci_order_items.csv)
 *
 * Expected seed counts are computed from the CSVs here, not hard-coded. What the test inserts
 * to probe constraints is rolled back; the migrated, seeded database is left for the harness.
 * Prints "N passed, N failed"; exits 1 on any failure, 2 when it cannot start.
 */
#include "migrate.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int g_passed, g_failed;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            g_passed++;                                                                            \
        } else {                                                                                   \
            g_failed++;                                                                            \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

static const char *g_url;

/* ---- query helpers: print the server's error and return a sentinel on failure ---- */

/* First column of the first row as a string the caller frees; NULL on error or no row. */
static char *query_text(PGconn *c, const char *sql, const char *param)
{
    PGresult *r = PQexecParams(c, sql, param ? 1 : 0, NULL, param ? &param : NULL, NULL, NULL, 0);
    char *out = NULL;

    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "query failed: %s\n  %s", sql, PQerrorMessage(c));
    else if (PQntuples(r) > 0)
        out = strdup(PQgetisnull(r, 0, 0) ? "(null)" : PQgetvalue(r, 0, 0));
    PQclear(r);
    return out;
}

/* First column as a number; -1 on error (all the numbers asked for here are >= 0). */
static long long query_ll(PGconn *c, const char *sql, const char *param)
{
    char *s = query_text(c, sql, param);
    long long v = s ? atoll(s) : -1;

    free(s);
    return v;
}

static int exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;

    if (!ok)
        fprintf(stderr, "exec failed: %.200s\n  %s", sql, PQerrorMessage(c));
    PQclear(r);
    return ok;
}

/* SQLSTATE of running sql inside a savepoint ("" if it succeeded); the savepoint is rolled
 * back either way, so the surrounding transaction stays usable. */
static void sqlstate_of(PGconn *c, const char *sql, char state[6])
{
    PGresult *r;
    const char *s;

    exec_ok(c, "SAVEPOINT probe");
    r = PQexec(c, sql);
    s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    snprintf(state, 6, "%s", s ? s : "");
    PQclear(r);
    exec_ok(c, "ROLLBACK TO SAVEPOINT probe");
}

/* md5 over the public schema's columns, indexes, constraints, triggers and extensions. */
static char *schema_fingerprint(PGconn *c)
{
    return query_text(
        c,
        "SELECT md5(concat_ws('|',"
        " (SELECT string_agg(format('%s.%s %s %s %s', table_name, column_name, data_type,"
        "                           is_nullable, column_default), ','"
        "                    ORDER BY table_name, column_name)"
        "    FROM information_schema.columns WHERE table_schema = 'public'),"
        " (SELECT string_agg(indexdef, ',' ORDER BY indexname)"
        "    FROM pg_indexes WHERE schemaname = 'public'),"
        " (SELECT string_agg(conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid),"
        "                    ',' ORDER BY conrelid::regclass::text, conname)"
        "    FROM pg_constraint WHERE connamespace = 'public'::regnamespace),"
        " (SELECT string_agg(pg_get_triggerdef(oid), ',' ORDER BY tgname)"
        "    FROM pg_trigger WHERE NOT tgisinternal),"
        " (SELECT string_agg(extname || ' ' || extversion, ',' ORDER BY extname) FROM pg_extension)))",
        NULL);
}

/* md5 over every row the service owns plus schema_migrations (applied_at included). */
static char *data_fingerprint(PGconn *c)
{
    return query_text(
        c,
        "SELECT md5(concat_ws('|',"
        " (SELECT string_agg(t::text, ',' ORDER BY order_id) FROM ordersapp_order t),"
        " (SELECT string_agg(t::text, ',' ORDER BY order_item_id) FROM ordersapp_orderitem t),"
        " (SELECT string_agg(t::text, ',' ORDER BY id) FROM order_events t),"
        " (SELECT string_agg(t::text, ',' ORDER BY version) FROM schema_migrations t)))",
        NULL);
}

static int same(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static long long advisory_locks_held(PGconn *c)
{
    return query_ll(c, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'", NULL);
}

/* ---- files ---- */

static int is_migration_file(const char *name)
{
    size_t len = strlen(name);

    return len > 9 && strspn(name, "0123456789") == 4 && name[4] == '_' &&
           strcmp(name + len - 4, ".sql") == 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted migration file names (at most max); returns how many. */
static size_t list_migration_files(const char *dir, char **names, size_t max)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;

    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL && n < max)
        if (is_migration_file(e->d_name))
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    return n;
}

static char *read_all(const char *dir, const char *name)
{
    char path[4096];
    FILE *f;
    long len;
    char *buf = NULL;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    if ((f = fopen(path, "rb")) == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)len + 1)) != NULL) {
        buf[fread(buf, 1, (size_t)len, f)] = '\0';
    }
    fclose(f);
    return buf;
}

static int write_file(const char *dir, const char *name, const char *text)
{
    char path[4096];
    FILE *f;
    int ok;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    if ((f = fopen(path, "w")) == NULL)
        return 0;
    ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

/* ---- what the CSVs say ---- */

struct csv_stats {
    long orders, created, cancelled, delivered, success, failed;
    long long max_order_id, total_cents;
    char first_id[32], first_created[32];
    long items;
    long long max_item_id, quantity_sum;
};

/* "966.29" -> 96629 */
static long long to_cents(const char *s)
{
    long long whole = atoll(s), frac = 0;
    const char *dot = strchr(s, '.');

    if (dot != NULL && dot[1] >= '0' && dot[1] <= '9') {
        frac = (dot[1] - '0') * 10;
        if (dot[2] >= '0' && dot[2] <= '9')
            frac += dot[2] - '0';
    }
    return whole * 100 + (s[0] == '-' ? -frac : frac);
}

/* Split a header-less CSV line without quoting (the seed files have none) into n fields. */
static int split(char *line, char **f, int n)
{
    int i = 0;

    line[strcspn(line, "\r\n")] = '\0';
    while (i < n && line != NULL)
        f[i++] = strsep(&line, ",");
    return i == n && line == NULL;
}

static int read_csv_stats(const char *seed_dir, struct csv_stats *st)
{
    char path[4096], line[1024], *f[6];
    FILE *fp;

    memset(st, 0, sizeof *st);
    snprintf(path, sizeof path, "%s/eci_orders.csv", seed_dir);
    if ((fp = fopen(path, "r")) == NULL)
        return 0;
    if (fgets(line, sizeof line, fp) == NULL) { /* header */
        fclose(fp);
        return 0;
    }
    while (fgets(line, sizeof line, fp) != NULL) {
        if (!split(line, f, 6))
            continue;
        if (st->orders++ == 0) {
            snprintf(st->first_id, sizeof st->first_id, "%s", f[0]);
            snprintf(st->first_created, sizeof st->first_created, "%s", f[5]);
        }
        if (atoll(f[0]) > st->max_order_id)
            st->max_order_id = atoll(f[0]);
        st->created += strcmp(f[2], "CREATED") == 0;
        st->cancelled += strcmp(f[2], "CANCELLED") == 0;
        st->delivered += strcmp(f[2], "DELIVERED") == 0;
        st->success += strcmp(f[3], "SUCCESS") == 0;
        st->failed += strcmp(f[3], "FAILED") == 0;
        st->total_cents += to_cents(f[4]);
    }
    fclose(fp);

    snprintf(path, sizeof path, "%s/eci_order_items.csv", seed_dir);
    if ((fp = fopen(path, "r")) == NULL)
        return 0;
    if (fgets(line, sizeof line, fp) == NULL) {
        fclose(fp);
        return 0;
    }
    while (fgets(line, sizeof line, fp) != NULL) {
        if (!split(line, f, 6))
            continue;
        st->items++;
        if (atoll(f[0]) > st->max_item_id)
            st->max_item_id = atoll(f[0]);
        st->quantity_sum += atoll(f[4]);
    }
    fclose(fp);
    return st->orders > 0 && st->items > 0;
}

/* ---- the tests ---- */

/* Two "replicas" migrate the empty database at once. The parent holds the migration lock until
 * both are queued on it, so they really overlap; one must apply everything, the other nothing. */
static void test_concurrent_first_run(PGconn *c, const char *dir, size_t nfiles)
{
    pid_t pids[2];
    int applied[2] = {-1, -1}, queued = 0;
    const char *key = OS_MIGRATE_LOCK_KEY;
    PGresult *r;

    r = PQexecParams(c, "SELECT pg_advisory_lock($1::bigint)", 1, NULL, &key, NULL, NULL, 0);
    PQclear(r);
    fflush(NULL);
    for (int i = 0; i < 2; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            char err[512];
            int n = 0, rc;
            PGconn *child = PQconnectdb(g_url);

            rc = PQstatus(child) == CONNECTION_OK ? os_migrate_run(child, dir, &n, err, sizeof err)
                                                   : -1;
            if (rc != 0)
                fprintf(stderr, "child migrate: %s%s\n", err, PQerrorMessage(child));
            PQfinish(child);
            exit(rc == 0 ? n : 255);
        }
    }
    for (int tries = 0; tries < 200 && !queued; tries++) { /* up to 10 s */
        queued = query_ll(c, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                             " AND NOT granted", NULL) == 2;
        if (!queued)
            usleep(50 * 1000);
    }
    CHECK(queued, "both migrators should wait on the migration lock");
    r = PQexecParams(c, "SELECT pg_advisory_unlock($1::bigint)", 1, NULL, &key, NULL, NULL, 0);
    PQclear(r);

    for (int i = 0; i < 2; i++) {
        int status;

        if (pids[i] > 0 && waitpid(pids[i], &status, 0) == pids[i] && WIFEXITED(status) &&
            WEXITSTATUS(status) != 255)
            applied[i] = WEXITSTATUS(status);
    }
    CHECK(applied[0] >= 0 && applied[1] >= 0, "both concurrent migrations succeed");
    CHECK(nfiles > 0 && applied[0] + applied[1] == (int)nfiles &&
              (applied[0] == 0 || applied[1] == 0),
          "first run applies all %zu migrations once (got %d + %d)", nfiles, applied[0],
          applied[1]);
    CHECK(query_ll(c, "SELECT count(*) FROM schema_migrations", NULL) == (long long)nfiles,
          "schema_migrations records every file");
}

static void test_second_run(PGconn *c, const char *dir)
{
    char err[512], *schema_before = schema_fingerprint(c), *data_before = data_fingerprint(c);
    char *schema_after, *data_after;
    int applied = -1, rc = os_migrate_run(c, dir, &applied, err, sizeof err);

    CHECK(rc == 0, "second migrate run succeeds: %s", err);
    CHECK(applied == 0, "second run applies nothing (applied %d)", applied);
    schema_after = schema_fingerprint(c);
    data_after = data_fingerprint(c);
    CHECK(same(schema_before, schema_after), "second run leaves the schema unchanged");
    CHECK(same(data_before, data_after), "second run leaves schema_migrations unchanged");
    CHECK(advisory_locks_held(c) == 0, "migration lock released");
    free(schema_before);
    free(schema_after);
    free(data_before);
    free(data_after);
}

static void test_migrate_errors(PGconn *c)
{
    char err[512], tmpl[] = "/tmp/test_migrate.XXXXXX", *dir;
    int applied = -1;

    CHECK(os_migrate_run(c, "/nonexistent/migrations", &applied, err, sizeof err) == -1 &&
              strstr(err, "/nonexistent/migrations") != NULL,
          "a missing migrations dir is an error naming it (%s)", err);

    /* a failing file is rolled back whole and not recorded */
    dir = mkdtemp(tmpl);
    CHECK(dir != NULL, "mkdtemp");
    if (dir == NULL)
        return;
    CHECK(write_file(dir, "9999_bad.sql", "CREATE TABLE should_not_exist (x int);\n"
                                          "SELECT 1 / 0;\n"),
          "write bad migration");
    CHECK(os_migrate_run(c, dir, &applied, err, sizeof err) == -1 && applied == 0,
          "a failing migration is an error");
    CHECK(strstr(err, "9999_bad.sql") != NULL && strstr(err, "22012") != NULL,
          "the error names the file and the SQLSTATE (%s)", err);
    CHECK(query_ll(c, "SELECT count(*) FROM pg_tables WHERE tablename = 'should_not_exist'",
                   NULL) == 0,
          "the failed migration was rolled back");
    CHECK(query_ll(c, "SELECT count(*) FROM schema_migrations WHERE version = '9999'", NULL) == 0,
          "the failed migration was not recorded");
    CHECK(advisory_locks_held(c) == 0 && PQtransactionStatus(c) == PQTRANS_IDLE,
          "after an error the lock is released and the connection idle");

    char path[4096];
    snprintf(path, sizeof path, "%s/9999_bad.sql", dir);
    unlink(path);
    rmdir(dir);
}

static void test_constraints(PGconn *c)
{
    char st[6], *id;

    if (!exec_ok(c, "BEGIN"))
        return;

    id = query_text(c, "INSERT INTO ordersapp_order (customer_id) VALUES (1) RETURNING order_id",
                    NULL);
    CHECK(id != NULL, "a minimal order is accepted");
    CHECK(query_ll(c, "SELECT count(*) FROM ordersapp_order WHERE order_id = $1::bigint"
                      " AND order_status = 'PENDING' AND payment_status = 'PENDING'"
                      " AND shipping_status = 'Unknown' AND order_total = 0"
                      " AND subtotal IS NULL",
                   id) == 1,
          "order defaults");

    sqlstate_of(c, "INSERT INTO ordersapp_order (customer_id, order_total) VALUES (1, -0.01)", st);
    CHECK(strcmp(st, "23514") == 0, "negative order_total refused (got '%s')", st);
    sqlstate_of(c, "INSERT INTO ordersapp_order (customer_id, order_status) VALUES (1, 'CREATED')",
                st);
    CHECK(strcmp(st, "23514") == 0, "unknown order_status refused (got '%s')", st);
    sqlstate_of(c, "INSERT INTO ordersapp_order (customer_id, payment_status)"
                   " VALUES (1, 'SUCCESS')", st);
    CHECK(strcmp(st, "23514") == 0, "unknown payment_status refused (got '%s')", st);
    sqlstate_of(c, "INSERT INTO ordersapp_order (customer_id, shipping_status)"
                   " VALUES (1, 'DELIVERED')", st);
    CHECK(strcmp(st, "23514") == 0, "shipping_status is case-sensitive (got '%s')", st);
    sqlstate_of(c, "INSERT INTO ordersapp_order (customer_id, tax) VALUES (1, -1)", st);
    CHECK(strcmp(st, "23514") == 0, "negative tax refused (got '%s')", st);
    sqlstate_of(c, "INSERT INTO ordersapp_order (customer_id) VALUES (0)", st);
    CHECK(strcmp(st, "23514") == 0, "customer_id 0 refused (got '%s')", st);

    if (id != NULL) {
        const char *items[][2] = {
            {"INSERT INTO ordersapp_orderitem (order_id, product_id, sku, quantity)"
             " VALUES ($1::bigint, 1, 'SKU1', 0)", "quantity 0"},
            {"INSERT INTO ordersapp_orderitem (order_id, product_id, sku, unit_price)"
             " VALUES ($1::bigint, 1, 'SKU1', -1)", "negative unit_price"},
            {"INSERT INTO ordersapp_orderitem (order_id, product_id, sku)"
             " VALUES ($1::bigint, 1, '')", "empty sku"},
            {"INSERT INTO ordersapp_orderitem (order_id, product_id, sku)"
             " VALUES ($1::bigint, 0, 'SKU1')", "product_id 0"},
        };
        for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
            PGresult *r;
            const char *s;

            exec_ok(c, "SAVEPOINT probe");
            r = PQexecParams(c, items[i][0], 1, NULL, (const char *const *)&id, NULL, NULL, 0);
            s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            CHECK(s != NULL && strcmp(s, "23514") == 0, "%s refused (got '%s')", items[i][1],
                  s ? s : "");
            PQclear(r);
            exec_ok(c, "ROLLBACK TO SAVEPOINT probe");
        }

        /* the trigger overrides whatever updated_at the UPDATE sets */
        CHECK(query_ll(c, "WITH u AS (UPDATE ordersapp_order SET order_status = 'CONFIRMED',"
                          " updated_at = '2000-01-01Z' WHERE order_id = $1::bigint"
                          " RETURNING updated_at) SELECT count(*) FROM u WHERE updated_at = now()",
                       id) == 1,
              "updated_at is kept current on UPDATE");
    }
    free(id);
    exec_ok(c, "ROLLBACK");
    CHECK(query_ll(c, "SELECT count(*) FROM ordersapp_order", NULL) == 0,
          "constraint probes left no rows");
}

static void test_seed(PGconn *c, const char *seed_dir, const struct csv_stats *cs)
{
    char err[512], *created, *data_before, *data_after;
    int orders = -1, items = -1;

    /* a non-UTC session must not shift the CSV's UTC timestamps */
    exec_ok(c, "SET TimeZone = 'Asia/Kolkata'");
    CHECK(os_seed_run(c, seed_dir, &orders, &items, err, sizeof err) == 0, "seed runs: %s", err);
    printf("seed loaded %d orders, %d items (CSV: %ld, %ld)\n", orders, items, cs->orders,
           cs->items);
    CHECK(orders == cs->orders && items == cs->items, "seed loads every CSV row");
    CHECK(query_ll(c, "SELECT count(*) FROM ordersapp_order", NULL) == cs->orders, "order rows");
    CHECK(query_ll(c, "SELECT count(*) FROM ordersapp_orderitem", NULL) == cs->items, "item rows");

    CHECK(query_ll(c, "SELECT count(*) FROM ordersapp_order WHERE order_status = 'CREATED'"
                      " OR payment_status = 'SUCCESS'", NULL) == 0,
          "no legacy CREATED / SUCCESS remains");
    CHECK(query_ll(c, "SELECT count(*) FROM ordersapp_order WHERE order_status = 'PENDING'", NULL) ==
              cs->created, "PENDING = CSV CREATED (%ld)", cs->created);
    CHECK(query_ll(c, "SELECT count(*) FROM ordersapp_order WHERE order_status = 'CANCELLED'",
                   NULL) == cs->cancelled, "CANCELLED kept (%ld)", cs->cancelled);
    CHECK(query_ll(c, "SELECT count(*) FROM ordersapp_order WHERE order_status = 'DELIVERED'",
                   NULL) == cs->delivered, "DELIVERED kept (%ld)", cs->delivered);
    CHECK(query_ll(c, "SELECT count(*) FROM ordersapp_order WHERE payment_status = 'PAID'", NULL) ==
              cs->success, "PAID = CSV SUCCESS (%ld)", cs->success);
    CHECK(query_ll(c, "SELECT count(*) FROM ordersapp_order WHERE payment_status = 'FAILED'",
                   NULL) == cs->failed, "FAILED kept (%ld)", cs->failed);
    CHECK(query_ll(c, "SELECT count(*) FROM ordersapp_order WHERE shipping_status = 'Delivered'",
                   NULL) == cs->delivered, "Delivered shipping count = DELIVERED orders");
    CHECK(query_ll(c, "SELECT count(*) FROM ordersapp_order WHERE"
                      " (order_status = 'DELIVERED') <> (shipping_status = 'Delivered')"
                      " OR shipping_status NOT IN ('Delivered', 'Unknown')", NULL) == 0,
          "shipping 'Delivered' exactly for DELIVERED orders, else 'Unknown'");
    CHECK(query_ll(c, "SELECT count(*) FROM ordersapp_order WHERE subtotal IS NOT NULL"
                      " OR tax IS NOT NULL OR shipping_fee IS NOT NULL", NULL) == 0,
          "legacy orders have no price breakdown");
    CHECK(query_ll(c, "SELECT (sum(order_total) * 100)::bigint FROM ordersapp_order", NULL) ==
              cs->total_cents, "order totals kept (sum %lld cents)", cs->total_cents);
    CHECK(query_ll(c, "SELECT max(order_id) FROM ordersapp_order", NULL) == cs->max_order_id &&
              query_ll(c, "SELECT max(order_item_id) FROM ordersapp_orderitem", NULL) ==
                  cs->max_item_id, "ids kept");
    CHECK(query_ll(c, "SELECT sum(quantity) FROM ordersapp_orderitem", NULL) == cs->quantity_sum,
          "item quantities kept");
    CHECK(query_ll(c, "SELECT count(*) FROM order_events", NULL) == 0,
          "the seed writes no order_events");

    created = query_text(c, "SELECT to_char(created_at AT TIME ZONE 'UTC',"
                            " 'YYYY-MM-DD HH24:MI:SS') FROM ordersapp_order"
                            " WHERE order_id = $1::bigint", cs->first_id);
    CHECK(same(created, cs->first_created), "created_at read as UTC: order %s is %s, CSV says %s",
          cs->first_id, created ? created : "(none)", cs->first_created);
    free(created);
    exec_ok(c, "RESET TimeZone");

    CHECK(query_ll(c, "SELECT nextval('ordersapp_order_order_id_seq')", NULL) > cs->max_order_id,
          "order sequence moved past the loaded ids");
    CHECK(query_ll(c, "SELECT nextval('ordersapp_orderitem_order_item_id_seq')", NULL) >
              cs->max_item_id, "item sequence moved past the loaded ids");

    data_before = data_fingerprint(c);
    orders = items = -1;
    CHECK(os_seed_run(c, seed_dir, &orders, &items, err, sizeof err) == 0 && orders == 0 &&
              items == 0, "second seed run loads nothing (%d, %d) %s", orders, items, err);
    data_after = data_fingerprint(c);
    CHECK(same(data_before, data_after), "second seed run changes nothing");
    free(data_before);
    free(data_after);
}

/* Forward-only files must also survive being run again by hand (psql -f): each one, re-applied
 * to the migrated and seeded database, changes neither schema nor data. Rolled back after. */
static void test_files_rerunnable(PGconn *c, const char *dir, char **names, size_t n)
{
    char *schema_before = schema_fingerprint(c), *data_before = data_fingerprint(c);
    char *schema_after, *data_after;

    if (!exec_ok(c, "BEGIN; SET LOCAL client_min_messages = warning"))
        return;
    for (size_t i = 0; i < n; i++) {
        char *sql = read_all(dir, names[i]);
        PGresult *r = sql ? PQexec(c, sql) : NULL;

        CHECK(r != NULL && (PQresultStatus(r) == PGRES_COMMAND_OK ||
                            PQresultStatus(r) == PGRES_TUPLES_OK),
              "re-running %s succeeds: %s", names[i], PQerrorMessage(c));
        PQclear(r);
        free(sql);
    }
    schema_after = schema_fingerprint(c);
    data_after = data_fingerprint(c);
    CHECK(same(schema_before, schema_after), "re-running the files leaves the schema unchanged");
    CHECK(same(data_before, data_after), "re-running the files leaves the data unchanged");
    exec_ok(c, "ROLLBACK");
    free(schema_before);
    free(schema_after);
    free(data_before);
    free(data_after);
}

int main(void)
{
    const char *mig_dir = getenv("MIGRATIONS_DIR"), *seed_dir = getenv("SEED_DIR");
    char *names[256], *schema_empty, *schema_migrated;
    size_t nfiles;
    struct csv_stats cs;
    PGconn *c;

    g_url = getenv("DATABASE_URL");
    if (g_url == NULL || mig_dir == NULL || seed_dir == NULL) {
        fprintf(stderr, "test_migrate: set DATABASE_URL (a fresh, empty database), "
                        "MIGRATIONS_DIR and SEED_DIR\n");
        return 2;
    }
    c = PQconnectdb(g_url);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "test_migrate: cannot connect to %s: %s", g_url, PQerrorMessage(c));
        PQfinish(c);
        return 2;
    }
    if (query_ll(c, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", NULL) != 0) {
        fprintf(stderr, "test_migrate: %s is not empty; give me a fresh database\n", g_url);
        PQfinish(c);
        return 2;
    }
    nfiles = list_migration_files(mig_dir, names, sizeof names / sizeof names[0]);
    CHECK(nfiles > 0, "found migration files in %s", mig_dir);
    CHECK(read_csv_stats(seed_dir, &cs), "read the seed CSVs in %s", seed_dir);

    schema_empty = schema_fingerprint(c);
    test_concurrent_first_run(c, mig_dir, nfiles);
    schema_migrated = schema_fingerprint(c);
    CHECK(schema_migrated != NULL && !same(schema_empty, schema_migrated),
          "migrations changed the schema");
    CHECK(query_ll(c, "SELECT count(*) FROM information_schema.columns"
                      " WHERE table_schema = 'public'", NULL) > 0 &&
              query_ll(c, "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'"
                          " AND indexname = 'ordersapp_orderitem_sku_trgm_idx'", NULL) == 1,
          "tables and the trigram index exist");
    test_second_run(c, mig_dir);
    test_migrate_errors(c);
    test_constraints(c);
    test_seed(c, seed_dir, &cs);
    test_files_rerunnable(c, mig_dir, names, nfiles);
    CHECK(PQtransactionStatus(c) == PQTRANS_IDLE, "connection left idle");

    free(schema_empty);
    free(schema_migrated);
    for (size_t i = 0; i < nfiles; i++)
        free(names[i]);
    PQfinish(c);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
