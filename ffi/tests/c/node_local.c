/* An embedded node with two local clients and one remote (TCP) client: every delivery kind
 * crosses between them both ways, the presence and log hooks report, stats count, and a hook
 * that calls back into the library is refused. Usage: node_local */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */

#include "check.h"

typedef struct {
    counter got;        /* messages received */
    counter presence;   /* presence events */
    char last[64];      /* payload of the last message */
    pthread_mutex_t lock;
} inbox;

static void inbox_init(inbox *b) {
    counter_init(&b->got);
    counter_init(&b->presence);
    pthread_mutex_init(&b->lock, NULL);
    b->last[0] = 0;
}

/* Whether the last message `b` got was `payload`. */
static int inbox_last_is(inbox *b, const char *payload) {
    pthread_mutex_lock(&b->lock);
    int same = strcmp(b->last, payload) == 0;
    pthread_mutex_unlock(&b->lock);
    return same;
}

static void inbox_destroy(inbox *b) {
    counter_destroy(&b->got);
    counter_destroy(&b->presence);
    pthread_mutex_destroy(&b->lock);
}

static void on_event(void *userdata, ringrelay_client *client, const ringrelay_event *ev) {
    inbox *b = (inbox *)userdata;
    (void)client;
    uint32_t kind = ringrelay_event_get_kind(ev);
    if (kind == RINGRELAY_EVENT_KIND_PRESENCE) {
        counter_add(&b->presence, 1);
    } else if (kind == RINGRELAY_EVENT_KIND_MESSAGE) {
        size_t len = 0;
        const uint8_t *p = ringrelay_event_get_payload(ev, &len);
        pthread_mutex_lock(&b->lock);
        size_t n = len < sizeof b->last - 1 ? len : sizeof b->last - 1;
        memcpy(b->last, p, n);
        b->last[n] = 0;
        pthread_mutex_unlock(&b->lock);
        counter_add(&b->got, 1);
    }
}

typedef struct {
    counter online;
    counter offline;
    counter refused_inside; /* library calls from inside the hook that were refused */
} presence_seen;

static void on_presence(void *userdata, const uint8_t *id, size_t id_len, bool online) {
    presence_seen *p = (presence_seen *)userdata;
    CHECK(id != NULL && id_len > 0);
    /* Calling back into the library from a hook is refused, never a deadlock. */
    ringrelay_node_config *cfg = NULL;
    if (ringrelay_node_config_new(&cfg) == RINGRELAY_STATUS_IN_CALLBACK && cfg == NULL) {
        counter_add(&p->refused_inside, 1);
    }
    counter_add(online ? &p->online : &p->offline, 1);
}

static counter log_lines;
static void on_log(void *userdata, uint32_t level, const char *message) {
    (void)userdata;
    CHECK(level >= 1 && level <= 3);
    CHECK(message != NULL);
    counter_add(&log_lines, 1);
}

static ringrelay_client *local(ringrelay_node *node, const char *id, inbox *b) {
    ringrelay_client_options opts;
    ringrelay_client_options_init(&opts, sizeof opts);
    opts.on_event = on_event;
    opts.userdata = b;
    ringrelay_client *c = NULL;
    OK(ringrelay_node_local_client(node, ID(id), NULL, 0, &opts, &c));
    return c;
}

int main(void) {
    counter_init(&log_lines);
    presence_seen seen;
    counter_init(&seen.online);
    counter_init(&seen.offline);
    counter_init(&seen.refused_inside);

    ringrelay_node_config *cfg = NULL;
    OK(ringrelay_node_config_new(&cfg));
    OK(ringrelay_node_config_set(cfg, "listen", "127.0.0.1:0"));
    OK(ringrelay_node_config_set(cfg, "workers", "2"));
    CHECK(ringrelay_node_config_set(cfg, "no_such_key", "1") == RINGRELAY_STATUS_CONFIG);
    CHECK(ringrelay_node_config_set(cfg, "workers", "many") == RINGRELAY_STATUS_CONFIG);
    /* A congestion control the kernel does not give the node is a configuration mistake. */
    ringrelay_node *refused = NULL;
    OK(ringrelay_node_config_set(cfg, "tcp_congestion", "no_such_algo"));
    CHECK(ringrelay_node_start(cfg, &refused) == RINGRELAY_STATUS_CONFIG);
    CHECK(refused == NULL);
    char why[512];
    ringrelay_last_error(why, sizeof why);
    CHECK(strstr(why, "tcp_congestion = \"no_such_algo\"") != NULL);
    OK(ringrelay_node_config_set(cfg, "tcp_congestion", "\"\""));
    OK(ringrelay_node_config_set_presence(cfg, on_presence, &seen, NULL));
    OK(ringrelay_node_config_set_log(cfg, on_log, NULL, NULL, 3));
    ringrelay_node *node = NULL;
    OK(ringrelay_node_start(cfg, &node));
    ringrelay_node_config_free(cfg); /* the node keeps what it needs */
    CHECK(counter_get(&log_lines) > 0); /* "relay listening", logged while starting */
    const char *addr = ringrelay_node_listen_addr(node);
    CHECK(addr != NULL && strncmp(addr, "127.0.0.1:", 10) == 0);

    inbox a, b, r;
    inbox_init(&a);
    inbox_init(&b);
    inbox_init(&r);
    ringrelay_client *la = local(node, "local-a", &a);
    ringrelay_client *lb = local(node, "local-b", &b);
    ringrelay_client_options opts;
    ringrelay_client_options_init(&opts, sizeof opts);
    opts.on_event = on_event;
    opts.userdata = &r;
    ringrelay_client *remote = NULL;
    OK(ringrelay_client_connect(addr, ID("remote"), NULL, 0, &opts, &remote));
    CHECK(counter_wait(&seen.online, 3));
    CHECK(counter_get(&seen.refused_inside) == 3);

    /* local -> local, local -> remote, remote -> local. */
    OK(ringrelay_client_send(la, ID("local-b"), ID("a to b")));
    OK(ringrelay_client_send(la, ID("remote"), ID("a to remote")));
    OK(ringrelay_client_send(remote, ID("local-a"), ID("remote to a")));
    CHECK(counter_wait(&b.got, 1) && counter_wait(&r.got, 1) && counter_wait(&a.got, 1));
    CHECK(strcmp(b.last, "a to b") == 0 && strcmp(r.last, "a to remote") == 0);
    CHECK(strcmp(a.last, "remote to a") == 0);

    /* A topic with a local and a remote subscriber; publish without echo from a subscriber:
     * the remote gets it, its sender does not. b's next publish, with echo, comes back to b,
     * and one publisher's messages keep their order: an echo of the first would come before. */
    OK(ringrelay_client_subscribe(lb, ID("room"), NULL, 0));
    OK(ringrelay_client_subscribe(remote, ID("room"), NULL, 0));
    OK(ringrelay_client_flush(lb, WAIT_MS));
    OK(ringrelay_client_flush(remote, WAIT_MS));
    OK(ringrelay_client_publish_no_echo(lb, ID("room"), ID("hello room")));
    OK(ringrelay_client_publish(lb, ID("room"), ID("b loud")));
    CHECK(counter_wait(&r.got, 3));
    CHECK(inbox_last_is(&r, "b loud"));
    CHECK(counter_wait(&b.got, 2));
    CHECK(inbox_last_is(&b, "b loud") && counter_get(&b.got) == 2);
    OK(ringrelay_client_publish(la, ID("room"), ID("from a")));
    CHECK(counter_wait(&r.got, 4) && counter_wait(&b.got, 3));
    CHECK(inbox_last_is(&b, "from a"));

    /* Presence of a local client, as a remote watcher sees it. */
    OK(ringrelay_client_watch(remote, ID("local-b")));
    CHECK(counter_wait(&r.presence, 1));

    ringrelay_node_stats stats;
    memset(&stats, 0, sizeof stats);
    stats.struct_size = sizeof stats;
    OK(ringrelay_node_get_stats(node, &stats));
    CHECK(stats.registered_clients == 3);
    CHECK(stats.connections_open == 3);
    CHECK(stats.deliveries >= 6);

    OK(ringrelay_client_free(lb));
    CHECK(counter_wait(&r.presence, 2)); /* offline */
    CHECK(counter_wait(&seen.offline, 1));

    OK(ringrelay_node_stop(node, 200));
    OK(ringrelay_node_stop(node, 200)); /* idempotent */
    CHECK(ringrelay_node_get_stats(node, &stats) == RINGRELAY_STATUS_NODE_STOPPED);
    CHECK(ringrelay_node_local_client(node, ID("late"), NULL, 0, NULL, &lb) ==
          RINGRELAY_STATUS_NODE_STOPPED);
    OK(ringrelay_client_free(la));
    OK(ringrelay_client_free(remote));
    OK(ringrelay_node_free(node));
    inbox_destroy(&a);
    inbox_destroy(&b);
    inbox_destroy(&r);
    counter_destroy(&seen.online);
    counter_destroy(&seen.offline);
    counter_destroy(&seen.refused_inside);
    counter_destroy(&log_lines);
    printf("PASS node_local\n");
    return 0;
}
