/* Acknowledged delivery through the C API: an acked TCP client sends to an acked local client
 * of an embedded node; every message arrives once, in order, and the sender sees them all
 * CONFIRMED (sending resumes after RINGRELAY_STATUS_WOULD_BLOCK once confirmations make room);
 * flush with a timeout waits until nothing is in flight. To a target that never acknowledges
 * (a plain client), the window takes exactly 4,096 messages and then says WOULD_BLOCK. A plain
 * client cannot send acked. Usage: acked MESSAGES */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */

#include "check.h"

typedef struct {
    counter received;  /* ACKED_MESSAGE events */
    long next_expected; /* payloads are "m<i>", in order */
    counter confirmed; /* messages covered by CONFIRMED events */
    counter failed;
} acked_state;

static void on_receiver(void *userdata, ringrelay_client *client, const ringrelay_event *ev) {
    acked_state *s = (acked_state *)userdata;
    (void)client;
    if (ringrelay_event_get_kind(ev) != RINGRELAY_EVENT_KIND_ACKED_MESSAGE) return;
    size_t len = 0, from_len = 0;
    const uint8_t *p = ringrelay_event_get_payload(ev, &len);
    const uint8_t *from = ringrelay_event_get_client_id(ev, &from_len);
    CHECK(bytes_eq(from, from_len, "sender"));
    char expected[32];
    snprintf(expected, sizeof expected, "m%ld", s->next_expected);
    CHECK(bytes_eq(p, len, expected));
    s->next_expected++;
    counter_add(&s->received, 1);
}

static void on_sender(void *userdata, ringrelay_client *client, const ringrelay_event *ev) {
    acked_state *s = (acked_state *)userdata;
    (void)client;
    count_outcome(ev, &s->confirmed, &s->failed);
}

int main(int argc, char **argv) {
    CHECK(argc == 2);
    long messages = strtol(argv[1], NULL, 10);
    CHECK(messages > 0);
    acked_state rx = {.next_expected = 0}, tx = {.next_expected = 0};
    counter_init(&rx.received);
    counter_init(&tx.confirmed);
    counter_init(&tx.failed);

    ringrelay_node_config *cfg = NULL;
    OK(ringrelay_node_config_new(&cfg));
    OK(ringrelay_node_config_set(cfg, "listen", "127.0.0.1:0"));
    OK(ringrelay_node_config_set(cfg, "workers", "2"));
    ringrelay_node *node = NULL;
    OK(ringrelay_node_start(cfg, &node));
    ringrelay_node_config_free(cfg);

    ringrelay_client_options opts;
    ringrelay_client_options_init(&opts, sizeof opts);
    opts.acked = true;
    opts.on_event = on_receiver;
    opts.userdata = &rx;
    ringrelay_client *receiver = NULL;
    OK(ringrelay_node_local_client(node, ID("receiver"), NULL, 0, &opts, &receiver));
    opts.on_event = on_sender;
    opts.userdata = &tx;
    ringrelay_client *sender = NULL;
    OK(ringrelay_client_connect(ringrelay_node_listen_addr(node), ID("sender"), NULL, 0, &opts,
                                &sender));

    long blocked = 0;
    char payload[32];
    for (long i = 0; i < messages;) {
        int n = snprintf(payload, sizeof payload, "m%ld", i);
        uint64_t seq = 0;
        ringrelay_status s = ringrelay_client_send_acked(sender, ID("receiver"),
                                                         (const uint8_t *)payload, (size_t)n, &seq);
        if (s == RINGRELAY_STATUS_WOULD_BLOCK) {
            /* The window is full: wait for confirmations to make room. */
            blocked++;
            OK(ringrelay_client_flush(sender, 0));
            CHECK(counter_wait(&tx.confirmed, i - 4000));
            continue;
        }
        OK(s);
        i++;
    }
    OK(ringrelay_client_flush(sender, WAIT_MS));
    CHECK(counter_wait(&tx.confirmed, messages));
    CHECK(counter_wait(&rx.received, messages));
    CHECK(counter_get(&tx.failed) == 0);
    printf("window full %ld times\n", blocked);

    /* A plain client has no acked sends, and never acknowledges: the window to it fills. */
    ringrelay_client *plain = NULL;
    OK(ringrelay_node_local_client(node, ID("plain"), NULL, 0, NULL, &plain));
    CHECK(ringrelay_client_send_acked(plain, ID("receiver"), ID("x"), NULL) ==
          RINGRELAY_STATUS_BAD_STATE);
    long taken = 0;
    ringrelay_status s;
    while ((s = ringrelay_client_send_acked(sender, ID("plain"), ID("unacknowledged"), NULL)) ==
           RINGRELAY_STATUS_OK) {
        CHECK(++taken <= 4096);
    }
    CHECK(s == RINGRELAY_STATUS_WOULD_BLOCK && taken == 4096);

    OK(ringrelay_client_free(plain));
    OK(ringrelay_client_free(sender));
    OK(ringrelay_client_free(receiver));
    OK(ringrelay_node_free(node));
    counter_destroy(&rx.received);
    counter_destroy(&tx.confirmed);
    counter_destroy(&tx.failed);
    printf("PASS acked\n");
    return 0;
}
