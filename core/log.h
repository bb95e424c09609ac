/*
 * log.h - structured logging: one JSON object per line on stderr.
 * LOG_LEVEL (debug|info|warn|error) decides what is written.
 */
#ifndef OS_LOG_H
#define OS_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "timer.h"

enum { OS_LOG_DEBUG = 0, OS_LOG_INFO = 1, OS_LOG_WARN = 2, OS_LOG_ERROR = 3 };

/** Sets the lowest level written. */
void os_log_set_level(int level);
/** Parses "debug", "info", "warn" or "error"; returns -1 for anything else. */
int os_log_parse_level(const char *s);
/** Names the worker whose thread writes the following lines. */
void os_log_set_worker(int worker_id);
/** Gives the calling worker thread an access log buffer of bytes (0: none, every line is
 * written at once) flushed flush_ms after its oldest line by a timer on timers; -1 when out
 * of memory (the lines are then written at once). */
int os_log_buffer_start(os_timers_t *timers, size_t bytes, uint64_t flush_ms);
/** Writes the calling thread's buffered lines now. */
void os_log_flush(void);
/** Writes the calling thread's buffered lines and frees its buffer (the worker stops). */
void os_log_buffer_stop(void);
/** Writes a message (printf format) at the given level. */
void os_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
