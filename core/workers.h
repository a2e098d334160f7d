/*
 * workers.h - the bounded worker pool for blocking work (plugin calls on
 * blocking client libraries, component init, timers' tasks).
 */
#ifndef DAPRD_WORKERS_H
#define DAPRD_WORKERS_H

#include <stddef.h>

typedef void (*work_fn)(void *arg);

/* Start n threads with a queue of at most max_queued waiting jobs. */
int workers_start(size_t n_threads, size_t max_queued);
/* Queue fn(arg).  Returns 0, or -1 when the queue is full (back-pressure:
 * the caller answers "busy" instead of growing without bound). */
int workers_submit(work_fn fn, void *arg);
/* Jobs queued or running right now. */
size_t workers_pending(void);
/* Finish every queued job, then join the threads. */
void workers_stop(void);

#endif
