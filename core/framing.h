/*
 * framing.h - refuses HTTP/1 requests whose body framing is ambiguous (RFC 9112 §6.3).
 */
#ifndef OS_FRAMING_H
#define OS_FRAMING_H

#include <h2o.h>

/** Registers the framing check on pathconf (before the handlers it guards) and the filter
 *  that makes h2o's own protocol errors on host JSON. */
void os_framing_register(h2o_hostconf_t *host, h2o_pathconf_t *pathconf);

/** Registers only the framing check on pathconf (for further paths of a host already registered). */
void os_framing_guard(h2o_pathconf_t *pathconf);

#endif
