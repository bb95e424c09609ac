/*
 * jobs.h - the background jobs' liveness as the rest of the core sees it (the jobs report
 * through the FFI, see ffi.h).
 */
#ifndef OS_JOBS_H
#define OS_JOBS_H

#include <stddef.h>

/** Writes the jobs' metrics (Prometheus text) to buf like snprintf: returns the length the text needs. */
size_t os_jobs_render(char *buf, size_t cap);

#endif
