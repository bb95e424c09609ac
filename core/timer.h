/*
 * timer.h - per-worker timers of any duration (h2o 2.2's h2o_timeout_t supports only one
 * fixed duration per list), kept in a binary min-heap and run by the worker's loop.
 */
#ifndef OS_TIMER_H
#define OS_TIMER_H

#include <stddef.h>
#include <stdint.h>

typedef struct os_timer os_timer_t;
typedef void (*os_timer_cb)(os_timer_t *timer);

struct os_timer {
    uint64_t at_ms;
    size_t heap_index; /* SIZE_MAX while not scheduled */
    os_timer_cb cb;
};

typedef struct os_timers {
    os_timer_t **heap;
    size_t len;
    size_t cap;
} os_timers_t;

/** Milliseconds from a monotonic clock. */
uint64_t os_clock_ms(void);
/** Microseconds from a monotonic clock. */
uint64_t os_clock_us(void);
/** Prepares a timer that is not scheduled. */
void os_timer_init(os_timer_t *timer, os_timer_cb cb);
/** Schedules (or reschedules) timer to fire delay_ms from now; returns -1 on allocation failure. */
int os_timer_start(os_timers_t *timers, os_timer_t *timer, uint64_t delay_ms);
/** Unschedules timer; harmless when it is not scheduled. */
void os_timer_stop(os_timers_t *timers, os_timer_t *timer);
/** Whether timer is scheduled. */
static inline int os_timer_is_active(const os_timer_t *timer) { return timer->heap_index != SIZE_MAX; }
/** Milliseconds until the next timer is due, at most max_wait. */
int32_t os_timers_next_wait(const os_timers_t *timers, int32_t max_wait);
/** Runs every timer that is due. */
void os_timers_run(os_timers_t *timers);
/** Frees the heap (timers themselves belong to their owners). */
void os_timers_dispose(os_timers_t *timers);

#endif
