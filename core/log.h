/*
 * log.h - structured logging: one JSON object per line on stderr.
 * LOG_LEVEL (debug|info|warn|error) decides what is written.
 */
#ifndef OS_LOG_H
#define OS_LOG_H

#include <stddef.h>

enum { OS_LOG_DEBUG = 0, OS_LOG_INFO = 1, OS_LOG_WARN = 2, OS_LOG_ERROR = 3 };

/** Sets the lowest level written. */
void os_log_set_level(int level);
/** Parses "debug", "info", "warn" or "error"; returns -1 for anything else. */
int os_log_parse_level(const char *s);
/** Names the worker whose thread writes the following lines. */
void os_log_set_worker(int worker_id);
/** Writes a message (printf format) at the given level. */
void os_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
