/*
 * timer.c - binary min-heap of timers ordered by due time. Each worker owns one heap and
 * is the only thread touching it, so there is no locking.
 */
#include "timer.h"

#include <stdlib.h>
#include <time.h>

uint64_t os_clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t os_clock_ms(void)
{
    return os_clock_us() / 1000u;
}

void os_timer_init(os_timer_t *timer, os_timer_cb cb)
{
    timer->at_ms = 0;
    timer->heap_index = SIZE_MAX;
    timer->cb = cb;
}

static void place(os_timers_t *t, size_t i, os_timer_t *timer)
{
    t->heap[i] = timer;
    timer->heap_index = i;
}

static void sift_up(os_timers_t *t, size_t i)
{
    os_timer_t *timer = t->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (t->heap[parent]->at_ms <= timer->at_ms)
            break;
        place(t, i, t->heap[parent]);
        i = parent;
    }
    place(t, i, timer);
}

static void sift_down(os_timers_t *t, size_t i)
{
    os_timer_t *timer = t->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= t->len)
            break;
        if (child + 1 < t->len && t->heap[child + 1]->at_ms < t->heap[child]->at_ms)
            child++;
        if (t->heap[child]->at_ms >= timer->at_ms)
            break;
        place(t, i, t->heap[child]);
        i = child;
    }
    place(t, i, timer);
}

void os_timer_stop(os_timers_t *t, os_timer_t *timer)
{
    size_t i = timer->heap_index;
    if (i == SIZE_MAX)
        return;
    timer->heap_index = SIZE_MAX;
    os_timer_t *last = t->heap[--t->len];
    if (i == t->len)
        return;
    place(t, i, last);
    sift_down(t, i);
    sift_up(t, last->heap_index);
}

int os_timer_start(os_timers_t *t, os_timer_t *timer, uint64_t delay_ms)
{
    os_timer_stop(t, timer);
    if (t->len == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        os_timer_t **heap = realloc(t->heap, cap * sizeof(*heap));
        if (heap == NULL)
            return -1;
        t->heap = heap;
        t->cap = cap;
    }
    timer->at_ms = os_clock_ms() + delay_ms;
    place(t, t->len++, timer);
    sift_up(t, t->len - 1);
    return 0;
}

int32_t os_timers_next_wait(const os_timers_t *t, int32_t max_wait)
{
    if (t->len == 0)
        return max_wait;
    uint64_t now = os_clock_ms(), at = t->heap[0]->at_ms;
    if (at <= now)
        return 0;
    return at - now < (uint64_t)max_wait ? (int32_t)(at - now) : max_wait;
}

void os_timers_run(os_timers_t *t)
{
    uint64_t now = os_clock_ms();
    while (t->len > 0 && t->heap[0]->at_ms <= now) {
        os_timer_t *timer = t->heap[0];
        os_timer_stop(t, timer);
        timer->cb(timer);
    }
}

void os_timers_dispose(os_timers_t *t)
{
    free(t->heap);
    t->heap = NULL;
    t->len = t->cap = 0;
}
