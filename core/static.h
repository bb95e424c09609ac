/*
 * static.h - static files served straight from disk by h2o's file handler.
 */
#ifndef OS_STATIC_H
#define OS_STATIC_H

#include <h2o.h>

/** Serves the files under dir at the URL prefix (ending in '/') of host, with the framing
 *  check, cache and security headers; logs a warning when dir is not a directory. */
void os_static_register(h2o_hostconf_t *host, const char *prefix, const char *dir);

#endif
