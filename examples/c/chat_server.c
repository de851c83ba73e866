/* chat_server: a C server that embeds a ringrelay node and hosts a chat room on it.
 *
 * Chat clients (examples/c/client.c, or any ringrelay client) connect to the node over TCP,
 * subscribe to the topic "chat" and publish each line with no echo: everyone in the room but
 * the sender receives it. The server is in the room too, as a local client of its own node (no
 * TCP): it prints every line, and the node's presence hook prints who comes and goes.
 *
 * Usage: chat_server [LISTEN]      (default 127.0.0.1:7400; port 0 picks a free one)
 * Prints "listening on IP:PORT", then the room's traffic; stops when its standard input ends.
 *
 * Build: cc -std=c11 chat_server.c $(pkg-config --cflags --libs --static ringrelay) */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "ringrelay.h"

static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;

/* Presence hook: runs on a node worker, so it only prints (no ringrelay calls). */
static void on_presence(void *userdata, const uint8_t *id, size_t id_len, bool online) {
    (void)userdata;
    pthread_mutex_lock(&print_lock);
    printf("* %.*s %s\n", (int)id_len, (const char *)id, online ? "online" : "offline");
    fflush(stdout);
    pthread_mutex_unlock(&print_lock);
}

/* The server's own client: prints each line of the room. */
static void on_event(void *userdata, ringrelay_client *client, const ringrelay_event *ev) {
    (void)userdata;
    (void)client;
    if (ringrelay_event_get_kind(ev) != RINGRELAY_EVENT_KIND_MESSAGE) return;
    size_t from_len = 0, len = 0;
    const uint8_t *from = ringrelay_event_get_client_id(ev, &from_len);
    const uint8_t *line = ringrelay_event_get_payload(ev, &len);
    pthread_mutex_lock(&print_lock);
    printf("%.*s: %.*s\n", (int)from_len, (const char *)from, (int)len, (const char *)line);
    fflush(stdout);
    pthread_mutex_unlock(&print_lock);
}

static int fail(const char *what, ringrelay_status status) {
    char err[512];
    ringrelay_last_error(err, sizeof err);
    fprintf(stderr, "chat_server: %s: %s (%s)\n", what, ringrelay_status_str(status), err);
    return 1;
}

int main(int argc, char **argv) {
    const char *listen = argc > 1 ? argv[1] : "127.0.0.1:7400";
    ringrelay_node_config *cfg = NULL;
    ringrelay_status s = ringrelay_node_config_new(&cfg);
    if (s != RINGRELAY_STATUS_OK) return fail("config", s);
    if ((s = ringrelay_node_config_set(cfg, "listen", listen)) != RINGRELAY_STATUS_OK ||
        (s = ringrelay_node_config_set(cfg, "workers", "1")) != RINGRELAY_STATUS_OK ||
        (s = ringrelay_node_config_set_presence(cfg, on_presence, NULL, NULL)) !=
            RINGRELAY_STATUS_OK) {
        ringrelay_node_config_free(cfg);
        return fail("config", s);
    }
    ringrelay_node *node = NULL;
    s = ringrelay_node_start(cfg, &node);
    ringrelay_node_config_free(cfg);
    if (s != RINGRELAY_STATUS_OK) return fail("start", s);

    ringrelay_client_options opts;
    ringrelay_client_options_init(&opts, sizeof opts);
    opts.on_event = on_event;
    ringrelay_client *me = NULL;
    s = ringrelay_node_local_client(node, (const uint8_t *)"server", 6, NULL, 0, &opts, &me);
    if (s == RINGRELAY_STATUS_OK) s = ringrelay_client_subscribe(me, (const uint8_t *)"chat", 4, NULL, 0);
    if (s != RINGRELAY_STATUS_OK) {
        ringrelay_node_free(node);
        return fail("local client", s);
    }
    pthread_mutex_lock(&print_lock);
    printf("listening on %s\n", ringrelay_node_listen_addr(node));
    fflush(stdout);
    pthread_mutex_unlock(&print_lock);

    /* Serve until standard input ends. */
    char discard[256];
    while (fgets(discard, sizeof discard, stdin) != NULL) {
    }
    ringrelay_client_free(me);
    ringrelay_node_stop(node, 1000);
    ringrelay_node_free(node);
    return 0;
}
