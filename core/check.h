/*
 * check.h - `orderservice check`: the route table validated without starting the server.
 */
#ifndef OS_CHECK_H
#define OS_CHECK_H

/** Loads ROUTES_FILE with SCRIPTS_DIR's filters and handlers in a throwaway Lua VM and prints
 *  every problem as "file:line: message" on stderr: 0 when there is none, -1 otherwise. */
int os_check_run(void);

#endif
