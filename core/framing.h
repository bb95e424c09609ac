/*
 * framing.h - refuses HTTP/1 requests whose body framing is ambiguous (RFC 9112 §6.3).
 */
#ifndef OS_FRAMING_H
#define OS_FRAMING_H

#include <h2o.h>

/** Registers the framing check on pathconf; register it before the handlers it guards. */
void os_framing_register(h2o_pathconf_t *pathconf);

#endif
