/* Helpers shared by the C test programs: CHECK aborts the program with the failing line and
 * the library's last error; waits are bounded condition-variable waits, never sleeps. */
#ifndef RINGRELAY_TEST_CHECK_H
#define RINGRELAY_TEST_CHECK_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ringrelay.h"

/* Every wait of a test program ends within this long. */
#define WAIT_MS 10000

static inline void fail_at(const char *file, int line, const char *what) {
    char err[512];
    ringrelay_last_error(err, sizeof err);
    fprintf(stderr, "FAIL %s:%d: %s (last error: %s)\n", file, line, what, err);
    exit(1);
}

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) fail_at(__FILE__, __LINE__, #cond);                                       \
    } while (0)

/* A call that must succeed. */
#define OK(call) CHECK((call) == RINGRELAY_STATUS_OK)

/* A counter that one thread raises and another waits on. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    long value;
} counter;

static inline void counter_init(counter *c) {
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->changed, NULL);
    c->value = 0;
}

static inline void counter_destroy(counter *c) {
    pthread_cond_destroy(&c->changed);
    pthread_mutex_destroy(&c->lock);
}

static inline void counter_add(counter *c, long n) {
    pthread_mutex_lock(&c->lock);
    c->value += n;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->lock);
}

static inline long counter_get(counter *c) {
    pthread_mutex_lock(&c->lock);
    long v = c->value;
    pthread_mutex_unlock(&c->lock);
    return v;
}

/* Waits until the counter reaches `at_least`, at most WAIT_MS; returns whether it did. */
static inline int counter_wait(counter *c, long at_least) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&c->lock);
    int timed_out = 0;
    while (c->value < at_least && !timed_out) {
        timed_out = pthread_cond_timedwait(&c->changed, &c->lock, &until) != 0;
    }
    int reached = c->value >= at_least;
    pthread_mutex_unlock(&c->lock);
    return reached;
}

/* Whether the bytes (ptr, len) equal the C string `s`. */
static inline int bytes_eq(const uint8_t *ptr, size_t len, const char *s) {
    return len == strlen(s) && (len == 0 || memcmp(ptr, s, len) == 0);
}

/* An acked sender's outcome events: adds the messages a CONFIRMED event covers to `confirmed`,
 * and 1 to `failed` for a FAILED event; ignores the other kinds. */
static inline void count_outcome(const ringrelay_event *ev, counter *confirmed, counter *failed) {
    uint64_t first = 0, last = 0;
    switch (ringrelay_event_get_kind(ev)) {
    case RINGRELAY_EVENT_KIND_CONFIRMED:
        ringrelay_event_get_seq(ev, &first, &last);
        CHECK(last >= first);
        counter_add(confirmed, (long)(last - first + 1));
        break;
    case RINGRELAY_EVENT_KIND_FAILED:
        counter_add(failed, 1);
        break;
    default:
        break;
    }
}

#define ID(s) (const uint8_t *)(s), strlen(s)

#endif
