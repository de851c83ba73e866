/* The C client's message rate: a sender and a receiver, both through the C API, 16 B
 * messages through a relay. The sender queues bursts of BURST messages and flushes after each
 * (auto_flush off), as the Rust client bench does; the receiver counts in its callback.
 * Prints "msgs_per_sec N" (from the first send to the last message received) and
 * "rx_cpu_ns_per_msg N" (the receiving thread's CPU time per message: its cost, apart from how
 * the CPUs were shared).
 *
 * Usage: c_client_rate SERVERS COUNT [MODE [WORKER_CPU]]
 *   MODE "relay" (default): both clients connect to SERVERS over TCP;
 *   "local": the relay is a node embedded in this process (SERVERS is ignored), the receiver
 *   is its local client and the sender connects over TCP; "embedded-tcp": the same node, both
 *   over TCP (the baseline of "local"). WORKER_CPU (embedded modes) pins the node's worker.
 * Run by benches/compare_c_client.sh. */
#define _POSIX_C_SOURCE 200809L

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ringrelay.h"

#define BURST 1024
#define PAYLOAD_BYTES 16

static atomic_long received;
static long expected;
/* The receiving thread's CPU time (CLOCK_THREAD_CPUTIME_ID) at the first and the last message:
 * what receiving costs, apart from how the CPUs were shared. Written by that thread only, read
 * after it is done. */
static double rx_cpu_first_s, rx_cpu_last_s;

static double thread_cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void on_event(void *userdata, ringrelay_client *client, const ringrelay_event *ev) {
    (void)userdata;
    (void)client;
    if (ringrelay_event_get_kind(ev) == RINGRELAY_EVENT_KIND_MESSAGE) {
        long n = atomic_fetch_add_explicit(&received, 1, memory_order_relaxed) + 1;
        if (n == 1) rx_cpu_first_s = thread_cpu_s();
        if (n == expected) rx_cpu_last_s = thread_cpu_s();
    }
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void must(ringrelay_status s, const char *what) {
    if (s == RINGRELAY_STATUS_OK) return;
    char err[512];
    ringrelay_last_error(err, sizeof err);
    fprintf(stderr, "%s: %s (%s)\n", what, ringrelay_status_str(s), err);
    exit(1);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: c_client_rate SERVERS COUNT [relay|local|embedded-tcp]\n");
        return 2;
    }
    long count = strtol(argv[2], NULL, 10);
    expected = count;
    const char *mode = argc > 3 ? argv[3] : "relay";
    int local = strcmp(mode, "local") == 0;
    int embedded = local || strcmp(mode, "embedded-tcp") == 0;
    const char *servers = argv[1];
    ringrelay_node *node = NULL;
    if (embedded) {
        ringrelay_node_config *cfg = NULL;
        must(ringrelay_node_config_new(&cfg), "config");
        must(ringrelay_node_config_set(cfg, "listen", "127.0.0.1:0"), "listen");
        must(ringrelay_node_config_set(cfg, "workers", "1"), "workers");
        /* WORKER_CPU pins the node's worker there (run the program under taskset elsewhere),
         * so the worker and the clients do not take turns on one CPU. */
        if (argc > 4) must(ringrelay_node_config_set(cfg, "cpus", argv[4]), "cpus");
        must(ringrelay_node_start(cfg, &node), "start");
        ringrelay_node_config_free(cfg);
        servers = ringrelay_node_listen_addr(node);
    }
    ringrelay_client_options opts;
    ringrelay_client_options_init(&opts, sizeof opts);
    opts.on_event = on_event;
    ringrelay_client *rx = NULL, *tx = NULL;
    if (local) {
        must(ringrelay_node_local_client(node, (const uint8_t *)"rx", 2, NULL, 0, &opts, &rx),
             "receiver");
    } else {
        must(ringrelay_client_connect(servers, (const uint8_t *)"rx", 2, NULL, 0, &opts, &rx),
             "receiver");
    }
    ringrelay_client_options send_opts;
    ringrelay_client_options_init(&send_opts, sizeof send_opts);
    send_opts.auto_flush = false;
    must(ringrelay_client_connect(servers, (const uint8_t *)"tx", 2, NULL, 0, &send_opts, &tx),
         "sender");
    uint8_t payload[PAYLOAD_BYTES];
    memset(payload, 'x', sizeof payload);
    double started = now_s();
    for (long sent = 0; sent < count;) {
        for (int i = 0; i < BURST && sent < count; i++, sent++) {
            must(ringrelay_client_send(tx, (const uint8_t *)"rx", 2, payload, sizeof payload),
                 "send");
        }
        must(ringrelay_client_flush(tx, 0), "flush");
        /* Stay within a few bursts of the receiver, as the Rust bench does. */
        while (sent - atomic_load_explicit(&received, memory_order_relaxed) > 64 * BURST) {
            struct timespec pause = {0, 50000};
            nanosleep(&pause, NULL);
        }
    }
    double deadline = now_s() + 30;
    while (atomic_load(&received) < count && now_s() < deadline) {
        struct timespec pause = {0, 100000};
        nanosleep(&pause, NULL);
    }
    double elapsed = now_s() - started;
    long got = atomic_load(&received);
    printf("msgs_per_sec %.0f received %ld of %ld\n", (double)got / elapsed, got, count);
    if (got == count && count > 1) {
        printf("rx_cpu_ns_per_msg %.1f\n", (rx_cpu_last_s - rx_cpu_first_s) * 1e9 / (double)(count - 1));
    }
    ringrelay_client_free(tx);
    ringrelay_client_free(rx);
    ringrelay_node_free(node);
    return got == count ? 0 : 1;
}
