/* test_db_resolve.c - the pool resolves DATABASE_URL's host names on h2o's resolver threads:
 * a lookup that takes 300 ms runs on another thread while the worker's loop keeps turning,
 * and creating the pool returns at once. This program's getaddrinfo stands in for the
 * system's (it is exported, so h2o's resolver thread calls it). Also: a URL whose host and
 * port lists differ in length is refused. */
#define _GNU_SOURCE
#include "config.h"
#include "db.h"
#include "timer.h"

#include <netdb.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "check.h"

static pthread_t loop_thread;
static int lookups, lookups_on_loop;
static char looked_up[256];

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    (void)service, (void)hints, (void)res;
    struct timespec slow = {0, 300 * 1000000L};
    __atomic_add_fetch(&lookups, 1, __ATOMIC_SEQ_CST);
    if (pthread_equal(pthread_self(), loop_thread))
        __atomic_add_fetch(&lookups_on_loop, 1, __ATOMIC_SEQ_CST);
    snprintf(looked_up, sizeof(looked_up), "%s", node != NULL ? node : "");
    nanosleep(&slow, NULL);
    return EAI_NONAME;
}

int main(void)
{
    char err[512];
    static h2o_globalconf_t conf;
    static os_worker_t worker;
    CHECK(os_config_load(&os_config, err, sizeof(err)) == 0);
    loop_thread = pthread_self();
    h2o_config_init(&conf);
    h2o_config_register_host(&conf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_context_init(&worker.ctx, h2o_evloop_create(), &conf);

    CHECK(os_db_pool_create(&worker, "DATABASE_URL", 0, "postgresql://u@a,b/db?port=1,2,3", 1, err, sizeof(err)) ==
          NULL);
    CHECK(strstr(err, "differ") != NULL);

    uint64_t started = os_clock_ms();
    os_db_pool_t *pool =
        os_db_pool_create(&worker, "DATABASE_URL", 0, "postgresql://u@slow-name.test:5432/db", 1, err, sizeof(err));
    CHECK(pool != NULL);
    CHECK(os_clock_ms() - started < 100); /* the 300 ms lookup did not run here */

    /* The loop turns (10 ms waits) all through the lookup. */
    int turns = 0;
    while (os_clock_ms() - started < 600) {
        h2o_evloop_run(worker.ctx.loop, 10);
        os_timers_run(&worker.timers);
        turns++;
    }
    CHECK(__atomic_load_n(&lookups, __ATOMIC_SEQ_CST) >= 1);
    CHECK(__atomic_load_n(&lookups_on_loop, __ATOMIC_SEQ_CST) == 0);
    CHECK(strcmp(looked_up, "slow-name.test") == 0);
    CHECK(turns >= 20);
    os_db_stats_t stats;
    os_db_pool_stats(pool, &stats);
    CHECK(stats.size == 1 && stats.connected == 0);
    os_db_pool_destroy(pool);
    return check_summary();
}
