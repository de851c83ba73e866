/* A node whose authorize hook refuses one id: that client gets RINGRELAY_STATUS_AUTH_FAILED
 * (local or over TCP), the others connect, and the hook sees ids, tokens and peers.
 * Usage: node_authorize */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */

#include "check.h"

typedef struct {
    counter asked;
    counter saw_local_peer;
    counter saw_tcp_peer;
    counter dropped;
} hook_state;

static bool authorize(void *userdata, const uint8_t *id, size_t id_len, const uint8_t *token,
                      size_t token_len, const char *peer) {
    hook_state *h = (hook_state *)userdata;
    counter_add(&h->asked, 1);
    CHECK(bytes_eq(token, token_len, "let-me-in"));
    if (strcmp(peer, "local") == 0) {
        counter_add(&h->saw_local_peer, 1);
    } else if (strncmp(peer, "127.0.0.1:", 10) == 0) {
        counter_add(&h->saw_tcp_peer, 1);
    }
    return !bytes_eq(id, id_len, "mallory");
}

static void drop_state(void *userdata) { counter_add(&((hook_state *)userdata)->dropped, 1); }

int main(void) {
    hook_state h;
    counter_init(&h.asked);
    counter_init(&h.saw_local_peer);
    counter_init(&h.saw_tcp_peer);
    counter_init(&h.dropped);
    ringrelay_node_config *cfg = NULL;
    OK(ringrelay_node_config_new(&cfg));
    OK(ringrelay_node_config_set(cfg, "listen", "127.0.0.1:0"));
    OK(ringrelay_node_config_set(cfg, "workers", "1"));
    OK(ringrelay_node_config_set(cfg, "token", "let-me-in"));
    OK(ringrelay_node_config_set_authorize(cfg, authorize, &h, drop_state));
    ringrelay_node *node = NULL;
    OK(ringrelay_node_start(cfg, &node));
    ringrelay_node_config_free(cfg);
    CHECK(counter_get(&h.dropped) == 0); /* the node still holds the hook */
    const char *addr = ringrelay_node_listen_addr(node);

    ringrelay_client *alice = NULL, *bob = NULL, *mallory = NULL;
    OK(ringrelay_node_local_client(node, ID("alice"), ID("let-me-in"), NULL, &alice));
    OK(ringrelay_client_connect(addr, ID("bob"), ID("let-me-in"), NULL, &bob));
    CHECK(ringrelay_node_local_client(node, ID("mallory"), ID("let-me-in"), NULL, &mallory) ==
          RINGRELAY_STATUS_AUTH_FAILED);
    CHECK(mallory == NULL);
    char err[256];
    ringrelay_last_error(err, sizeof err);
    CHECK(strstr(err, "refused by the host") != NULL);
    CHECK(ringrelay_client_connect(addr, ID("mallory"), ID("let-me-in"), NULL, &mallory) ==
          RINGRELAY_STATUS_AUTH_FAILED);
    /* A wrong token fails before the hook is asked. */
    long asked = counter_get(&h.asked);
    CHECK(ringrelay_client_connect(addr, ID("eve"), ID("guess"), NULL, &mallory) ==
          RINGRELAY_STATUS_AUTH_FAILED);
    CHECK(counter_get(&h.asked) == asked);
    CHECK(counter_get(&h.saw_local_peer) == 2 && counter_get(&h.saw_tcp_peer) == 2);

    /* The allowed ones work. */
    OK(ringrelay_client_send(bob, ID("alice"), ID("hi")));
    OK(ringrelay_client_flush(bob, WAIT_MS));

    OK(ringrelay_client_free(alice));
    OK(ringrelay_client_free(bob));
    OK(ringrelay_node_free(node));
    CHECK(counter_get(&h.dropped) == 1); /* the last holder let the hook go */
    counter_destroy(&h.asked);
    counter_destroy(&h.saw_local_peer);
    counter_destroy(&h.saw_tcp_peer);
    counter_destroy(&h.dropped);
    printf("PASS node_authorize\n");
    return 0;
}
