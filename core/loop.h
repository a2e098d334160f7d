/*
 * loop.h - the one libevent loop thread and the way back to it.
 *
 * Everything that touches HTTP requests runs on the loop thread.  Worker
 * threads and plugin threads hand results back with loop_post(), which
 * queues the call and wakes the loop.
 */
#ifndef DAPRD_LOOP_H
#define DAPRD_LOOP_H

#include <event2/event.h>

typedef void (*loop_fn)(void *arg);

/* Create the event base (with pthreads locking enabled). */
int loop_init(void);
struct event_base *loop_base(void);
/* Run until loop_stop(). */
int loop_run(void);
void loop_stop(void);
/* Queue fn(arg) to run on the loop thread; callable from any thread. */
void loop_post(loop_fn fn, void *arg);
/* Is the caller the loop thread? */
int loop_is_current(void);
/* Run every posted call now (used during shutdown). */
void loop_drain(void);
void loop_free(void);

#endif
