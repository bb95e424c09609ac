/*
 * worker.c - owns which worker the calling thread is (a thread-local set once when the
 * worker thread starts), for code that is not handed its worker: the log, the FFI.
 */
#include "worker.h"
#include "ffi.h"

static __thread os_worker_t *current_worker;

os_worker_t *os_worker_current(void)
{
    return current_worker;
}

void os_worker_set_current(os_worker_t *worker)
{
    current_worker = worker;
}

int os_worker_id(void)
{
    return current_worker != NULL ? current_worker->id : -1;
}
