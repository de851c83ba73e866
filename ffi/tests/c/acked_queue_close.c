/* Acked mode in queue mode: an acked message is acknowledged only once the host has drained
 * it. A receiver drains one message of ten and closes: the sender sees none of the other nine
 * confirmed meanwhile, and sends them again to the id's next connection, which gets every one;
 * in the end all ten are CONFIRMED and none FAILED. A message to an id that never comes ends
 * FAILED with RINGRELAY_FAIL_REASON_TIMEOUT after `acked_timeout_ms`. Two clients that flush
 * towards each other at once both settle (a waiting flush does not stop its client from
 * handing events out, and so from acknowledging them).
 * Usage: acked_queue_close HOST:PORT */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, poll under -std=c11 */

#include <poll.h>

#include "check.h"

#define MESSAGES 10

typedef struct {
    counter confirmed; /* messages covered by CONFIRMED events */
    counter failed;
} sender_state;

typedef struct {
    int seen[MESSAGES]; /* times each "m<i>" was handed out */
    long distinct;
} receiver_state;

static counter timed_out; /* FAILED events with the timeout's code */

static void on_timeout_sender(void *userdata, ringrelay_client *client, const ringrelay_event *ev) {
    (void)userdata;
    (void)client;
    if (ringrelay_event_get_kind(ev) != RINGRELAY_EVENT_KIND_FAILED) return;
    CHECK(ringrelay_event_get_code(ev) == RINGRELAY_FAIL_REASON_TIMEOUT);
    counter_add(&timed_out, 1);
}

/* A message to nobody, with a 200 ms timeout, fails as timed out; flush then finds nothing in
 * flight. */
static void check_timeout(const char *servers) {
    counter_init(&timed_out);
    ringrelay_client_options opts;
    ringrelay_client_options_init(&opts, sizeof opts);
    opts.acked = true;
    opts.acked_timeout_ms = 200;
    opts.on_event = on_timeout_sender;
    ringrelay_client *c = NULL;
    OK(ringrelay_client_connect(servers, ID("impatient"), NULL, 0, &opts, &c));
    uint64_t seq = 0;
    OK(ringrelay_client_send_acked(c, ID("never-here"), ID("anyone?"), &seq));
    OK(ringrelay_client_flush(c, WAIT_MS));
    CHECK(counter_wait(&timed_out, 1));
    OK(ringrelay_client_free(c));
    counter_destroy(&timed_out);
}

typedef struct {
    ringrelay_client *client;
    ringrelay_status flushed;
} flusher;

static void *flush_thread(void *arg) {
    flusher *f = (flusher *)arg;
    f->flushed = ringrelay_client_flush(f->client, WAIT_MS);
    return NULL;
}

static void ignore_events(void *userdata, ringrelay_client *client, const ringrelay_event *ev) {
    (void)userdata;
    (void)client;
    (void)ev;
}

static void check_mutual_flush(const char *servers) {
    ringrelay_client_options opts;
    ringrelay_client_options_init(&opts, sizeof opts);
    opts.acked = true;
    opts.on_event = ignore_events;
    ringrelay_client *a = NULL, *b = NULL;
    OK(ringrelay_client_connect(servers, ID("mutual-a"), NULL, 0, &opts, &a));
    OK(ringrelay_client_connect(servers, ID("mutual-b"), NULL, 0, &opts, &b));
    for (int i = 0; i < 100; i++) {
        uint64_t seq = 0;
        OK(ringrelay_client_send_acked(a, ID("mutual-b"), ID("to b"), &seq));
        OK(ringrelay_client_send_acked(b, ID("mutual-a"), ID("to a"), &seq));
    }
    flusher fa = {a, RINGRELAY_STATUS_PANIC}, fb = {b, RINGRELAY_STATUS_PANIC};
    pthread_t ta, tb;
    CHECK(pthread_create(&ta, NULL, flush_thread, &fa) == 0);
    CHECK(pthread_create(&tb, NULL, flush_thread, &fb) == 0);
    CHECK(pthread_join(ta, NULL) == 0 && pthread_join(tb, NULL) == 0);
    CHECK(fa.flushed == RINGRELAY_STATUS_OK);
    CHECK(fb.flushed == RINGRELAY_STATUS_OK);
    OK(ringrelay_client_free(a));
    OK(ringrelay_client_free(b));
}

static void on_sender(void *userdata, ringrelay_client *client, const ringrelay_event *ev) {
    sender_state *s = (sender_state *)userdata;
    (void)client;
    count_outcome(ev, &s->confirmed, &s->failed);
}

static void on_drained(void *userdata, ringrelay_client *client, const ringrelay_event *ev) {
    receiver_state *r = (receiver_state *)userdata;
    (void)client;
    if (ringrelay_event_get_kind(ev) != RINGRELAY_EVENT_KIND_ACKED_MESSAGE) return;
    size_t len = 0;
    const uint8_t *p = ringrelay_event_get_payload(ev, &len);
    CHECK(len >= 2 && len < 8 && p[0] == 'm');
    char digits[8] = {0};
    memcpy(digits, p + 1, len - 1);
    long i = strtol(digits, NULL, 10);
    CHECK(i >= 0 && i < MESSAGES);
    if (r->seen[i]++ == 0) r->distinct++;
}

static ringrelay_client *connect_receiver(const char *servers) {
    ringrelay_client_options opts;
    ringrelay_client_options_init(&opts, sizeof opts);
    opts.acked = true; /* queue mode: no on_event */
    ringrelay_client *rx = NULL;
    OK(ringrelay_client_connect(servers, ID("receiver"), NULL, 0, &opts, &rx));
    return rx;
}

/* Waits until the queue client's fd is readable, then drains up to `max` events. */
static size_t drain_some(ringrelay_client *rx, receiver_state *r, size_t max) {
    struct pollfd pfd = {.fd = ringrelay_client_fd(rx), .events = POLLIN, .revents = 0};
    CHECK(pfd.fd >= 0);
    CHECK(poll(&pfd, 1, WAIT_MS) == 1);
    size_t n = 0;
    OK(ringrelay_client_drain(rx, on_drained, r, max, &n));
    return n;
}

int main(int argc, char **argv) {
    CHECK(argc == 2);
    const char *servers = argv[1];
    sender_state tx_state;
    counter_init(&tx_state.confirmed);
    counter_init(&tx_state.failed);

    ringrelay_client *rx = connect_receiver(servers);
    ringrelay_client_options opts;
    ringrelay_client_options_init(&opts, sizeof opts);
    opts.acked = true;
    opts.on_event = on_sender;
    opts.userdata = &tx_state;
    ringrelay_client *tx = NULL;
    OK(ringrelay_client_connect(servers, ID("sender"), NULL, 0, &opts, &tx));

    for (int i = 0; i < MESSAGES; i++) {
        char payload[16];
        snprintf(payload, sizeof payload, "m%d", i);
        uint64_t seq = 0;
        OK(ringrelay_client_send_acked(tx, ID("receiver"), (const uint8_t *)payload,
                                       strlen(payload), &seq));
    }
    OK(ringrelay_client_flush(tx, 0));

    /* One message drained; the rest stay queued (or unread). Their acknowledgements wait for
     * the drain, so the sender cannot settle: it retransmits into the receiver's de-duplication,
     * whose immediate acknowledgements wait behind the queued messages too. */
    receiver_state first = {{0}, 0};
    CHECK(drain_some(rx, &first, 1) == 1);
    CHECK(first.distinct == 1);
    CHECK(ringrelay_client_flush(tx, 500) == RINGRELAY_STATUS_TIMEOUT);
    CHECK(counter_get(&tx_state.confirmed) <= 1);
    OK(ringrelay_client_close(rx));
    OK(ringrelay_client_free(rx));

    /* The id's next connection receives what the first never handed out. */
    receiver_state again = {{0}, 0};
    ringrelay_client *rx2 = connect_receiver(servers);
    for (int round = 0; round < 100; round++) {
        int missing = 0;
        for (int i = 0; i < MESSAGES; i++) {
            if (first.seen[i] == 0 && again.seen[i] == 0) missing = 1;
        }
        if (!missing) break;
        drain_some(rx2, &again, 64);
    }
    for (int i = 0; i < MESSAGES; i++) {
        CHECK(first.seen[i] + again.seen[i] >= 1);
    }
    CHECK(again.distinct >= MESSAGES - 1);

    /* Each drained message is acknowledged once drained: the sender settles with all ten. */
    OK(ringrelay_client_flush(tx, WAIT_MS));
    CHECK(counter_wait(&tx_state.confirmed, MESSAGES)); /* the events follow the flush */
    CHECK(counter_get(&tx_state.confirmed) == MESSAGES);
    CHECK(counter_get(&tx_state.failed) == 0);

    OK(ringrelay_client_close(tx));
    OK(ringrelay_client_free(tx));
    OK(ringrelay_client_free(rx2));
    counter_destroy(&tx_state.confirmed);
    counter_destroy(&tx_state.failed);
    check_timeout(servers);
    check_mutual_flush(servers);
    puts("PASS acked_queue_close");
    return 0;
}
