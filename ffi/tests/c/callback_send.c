/* Calls from inside callbacks: an echo client answers every message from inside its event
 * callback (send on the same client works), and the calls that would stop or free the client
 * whose callback is running return RINGRELAY_STATUS_IN_CALLBACK instead of deadlocking.
 * Usage: callback_send HOST:PORT */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, poll under -std=c11 */

#include "check.h"

/* Messages the pinger sends (and gets back). */
#define ROUNDS 2000

typedef struct {
    counter echoed;
    counter refusals;
} echo_state;

static void on_echo(void *userdata, ringrelay_client *client, const ringrelay_event *ev) {
    echo_state *e = (echo_state *)userdata;
    if (ringrelay_event_get_kind(ev) != RINGRELAY_EVENT_KIND_MESSAGE) return;
    size_t from_len = 0, len = 0;
    const uint8_t *from = ringrelay_event_get_client_id(ev, &from_len);
    const uint8_t *payload = ringrelay_event_get_payload(ev, &len);
    OK(ringrelay_client_send(client, from, from_len, payload, len));
    if (bytes_eq(payload, len, "try-to-free")) {
        /* Each refused with IN_CALLBACK, and the client keeps working. */
        CHECK(ringrelay_client_free(client) == RINGRELAY_STATUS_IN_CALLBACK);
        CHECK(ringrelay_client_close(client) == RINGRELAY_STATUS_IN_CALLBACK);
        char err[256];
        ringrelay_last_error(err, sizeof err);
        CHECK(strstr(err, "inside a callback") != NULL);
        counter_add(&e->refusals, 1);
    }
    counter_add(&e->echoed, 1);
}

static void on_reply(void *userdata, ringrelay_client *client, const ringrelay_event *ev) {
    (void)client;
    if (ringrelay_event_get_kind(ev) == RINGRELAY_EVENT_KIND_MESSAGE) {
        counter_add((counter *)userdata, 1);
    }
}

int main(int argc, char **argv) {
    CHECK(argc == 2);
    echo_state e;
    counter_init(&e.echoed);
    counter_init(&e.refusals);
    counter replies;
    counter_init(&replies);

    ringrelay_client_options opts;
    ringrelay_client_options_init(&opts, sizeof opts);
    opts.on_event = on_echo;
    opts.userdata = &e;
    ringrelay_client *echo = NULL;
    OK(ringrelay_client_connect(argv[1], ID("echo"), NULL, 0, &opts, &echo));
    opts.on_event = on_reply;
    opts.userdata = &replies;
    ringrelay_client *pinger = NULL;
    OK(ringrelay_client_connect(argv[1], ID("pinger"), NULL, 0, &opts, &pinger));

    char payload[32];
    for (int i = 0; i < ROUNDS; i++) {
        int n = snprintf(payload, sizeof payload, "ping %d", i);
        OK(ringrelay_client_send(pinger, ID("echo"), (const uint8_t *)payload, (size_t)n));
    }
    OK(ringrelay_client_flush(pinger, 0));
    CHECK(counter_wait(&replies, ROUNDS));

    OK(ringrelay_client_send(pinger, ID("echo"), ID("try-to-free")));
    OK(ringrelay_client_flush(pinger, 0));
    CHECK(counter_wait(&e.refusals, 1));
    CHECK(counter_wait(&replies, ROUNDS + 1));
    CHECK(counter_get(&e.echoed) == ROUNDS + 1);

    /* From outside its callbacks, the same calls work. */
    OK(ringrelay_client_free(echo));
    OK(ringrelay_client_free(pinger));
    counter_destroy(&e.echoed);
    counter_destroy(&e.refusals);
    counter_destroy(&replies);
    printf("PASS callback_send\n");
    return 0;
}
