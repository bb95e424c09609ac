/* test_timer.c - the per-worker timer heap fires timers in due order and honours stops. */
#include "timer.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "check.h"

typedef struct probe {
    os_timer_t timer;
    int id;
} probe_t;

static int fired[64], nfired;

static void on_fire(os_timer_t *t)
{
    fired[nfired++] = ((probe_t *)t)->id;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int main(void)
{
    os_timers_t timers = {0};
    probe_t p[40];
    for (int i = 0; i < 40; i++) {
        p[i].id = i;
        os_timer_init(&p[i].timer, on_fire);
    }
    CHECK(os_timers_next_wait(&timers, 100) == 100);

    /* Scheduled out of order, with one stopped and one rescheduled: fire in due order. */
    int delays[] = {30, 10, 20, 0, 25};
    for (int i = 0; i < 5; i++)
        CHECK(os_timer_start(&timers, &p[i].timer, (uint64_t)delays[i]) == 0);
    CHECK(os_timer_is_active(&p[2].timer));
    os_timer_stop(&timers, &p[2].timer);
    CHECK(!os_timer_is_active(&p[2].timer));
    os_timer_stop(&timers, &p[2].timer); /* stopping twice is harmless */
    os_timer_start(&timers, &p[4].timer, 5);
    CHECK(os_timers_next_wait(&timers, 100) == 0);
    sleep_ms(40);
    os_timers_run(&timers);
    CHECK(nfired == 4);
    CHECK(fired[0] == 3 && fired[1] == 4 && fired[2] == 1 && fired[3] == 0);
    CHECK(timers.len == 0);

    /* Many timers: the heap grows and still yields them sorted. */
    nfired = 0;
    for (int i = 0; i < 40; i++)
        os_timer_start(&timers, &p[i].timer, (uint64_t)((i * 7) % 40));
    CHECK(os_timers_next_wait(&timers, 100) <= 1);
    sleep_ms(50);
    os_timers_run(&timers);
    CHECK(nfired == 40);
    int sorted = 1;
    for (int i = 1; i < nfired; i++)
        sorted &= (fired[i - 1] * 7) % 40 <= (fired[i] * 7) % 40;
    CHECK(sorted);

    /* A timer not yet due is not run. */
    nfired = 0;
    os_timer_start(&timers, &p[0].timer, 1000);
    os_timers_run(&timers);
    CHECK(nfired == 0);
    CHECK(os_timers_next_wait(&timers, 100) == 100);
    CHECK(os_timers_next_wait(&timers, 5000) > 900);
    os_timers_dispose(&timers);

    return check_summary();
}
