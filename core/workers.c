/* workers.c - a fixed set of threads fed from one bounded FIFO queue. */
#include "config.h"
#include "workers.h"
#include "util.h"

#include <pthread.h>
#include <stdlib.h>

struct job {
    work_fn fn;
    void *arg;
    struct job *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t have_job = PTHREAD_COND_INITIALIZER;
static struct job *head, *tail;
static size_t queued, running, limit;
static int stopping;
static pthread_t *threads;
static size_t n_threads_started;

static void *worker_main(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (!head && !stopping)
            pthread_cond_wait(&have_job, &lock);
        if (!head && stopping)
            break;
        struct job *j = head;
        head = j->next;
        if (!head) tail = NULL;
        queued--;
        running++;
        pthread_mutex_unlock(&lock);
        j->fn(j->arg);
        free(j);
        pthread_mutex_lock(&lock);
        running--;
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

int workers_start(size_t n_threads, size_t max_queued)
{
    limit = max_queued;
    threads = xcalloc(n_threads, sizeof *threads);
    for (size_t i = 0; i < n_threads; i++) {
        if (pthread_create(&threads[i], NULL, worker_main, NULL) != 0)
            return -1;
        n_threads_started++;
    }
    return 0;
}

int workers_submit(work_fn fn, void *arg)
{
    pthread_mutex_lock(&lock);
    if (stopping || queued >= limit) {
        pthread_mutex_unlock(&lock);
        return -1;
    }
    struct job *j = xmalloc(sizeof *j);
    j->fn = fn;
    j->arg = arg;
    j->next = NULL;
    if (tail) tail->next = j; else head = j;
    tail = j;
    queued++;
    pthread_cond_signal(&have_job);
    pthread_mutex_unlock(&lock);
    return 0;
}

size_t workers_pending(void)
{
    pthread_mutex_lock(&lock);
    size_t n = queued + running;
    pthread_mutex_unlock(&lock);
    return n;
}

void workers_stop(void)
{
    pthread_mutex_lock(&lock);
    stopping = 1;
    pthread_cond_broadcast(&have_job);
    pthread_mutex_unlock(&lock);
    for (size_t i = 0; i < n_threads_started; i++)
        pthread_join(threads[i], NULL);
    free(threads);
    threads = NULL;
    n_threads_started = 0;
}
