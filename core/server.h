/*
 * server.h - the HTTP server: listeners, worker threads, graceful shutdown.
 */
#ifndef OS_SERVER_H
#define OS_SERVER_H

/** Serves until SIGTERM/SIGINT; returns the process exit status. */
int os_server_run(void);

#endif
