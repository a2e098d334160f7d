/* loop.c - the libevent loop and a thread-safe queue of calls into it. */
#include "config.h"
#include "loop.h"
#include "util.h"

#include <event2/thread.h>
#include <pthread.h>
#include <stdlib.h>

struct posted_call {
    loop_fn fn;
    void *arg;
    struct posted_call *next;
};

static struct event_base *base;
static struct event *wakeup_ev;
static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static struct posted_call *queue_head, *queue_tail;
static pthread_t loop_thread;
static int loop_running;

/* Runs on the loop: take the whole queue at once, then run it unlocked so
 * that posted functions may post again. */
static void drain_posted(evutil_socket_t fd, short what, void *unused)
{
    (void)fd; (void)what; (void)unused;
    pthread_mutex_lock(&queue_lock);
    struct posted_call *c = queue_head;
    queue_head = queue_tail = NULL;
    pthread_mutex_unlock(&queue_lock);
    while (c) {
        struct posted_call *next = c->next;
        c->fn(c->arg);
        free(c);
        c = next;
    }
}

int loop_init(void)
{
    if (evthread_use_pthreads() != 0)
        return -1;
    base = event_base_new();
    if (!base)
        return -1;
    wakeup_ev = event_new(base, -1, 0, drain_posted, NULL);
    loop_thread = pthread_self();
    return wakeup_ev ? 0 : -1;
}

struct event_base *loop_base(void) { return base; }

int loop_run(void)
{
    loop_thread = pthread_self();
    loop_running = 1;
    int rc = event_base_dispatch(base);
    loop_running = 0;
    drain_posted(-1, 0, NULL);
    return rc;
}

void loop_stop(void)
{
    event_base_loopexit(base, NULL);
}

void loop_post(loop_fn fn, void *arg)
{
    struct posted_call *c = xmalloc(sizeof *c);
    c->fn = fn;
    c->arg = arg;
    c->next = NULL;
    pthread_mutex_lock(&queue_lock);
    if (queue_tail) queue_tail->next = c; else queue_head = c;
    queue_tail = c;
    pthread_mutex_unlock(&queue_lock);
    event_active(wakeup_ev, 0, 0);
}

int loop_is_current(void)
{
    return pthread_equal(pthread_self(), loop_thread);
}

void loop_drain(void)
{
    drain_posted(-1, 0, NULL);
}

void loop_free(void)
{
    drain_posted(-1, 0, NULL);
    if (wakeup_ev) event_free(wakeup_ev);
    if (base) event_base_free(base);
    wakeup_ev = NULL;
    base = NULL;
    libevent_global_shutdown();
}
