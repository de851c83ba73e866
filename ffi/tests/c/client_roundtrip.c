/* A client round trip through a relay: one client in callback mode, one in queue mode polled
 * through ringrelay_client_fd(). Direct sends, topics, a queue group, publish without echo,
 * presence, an ERROR for an unknown id, argument errors, retained events, and drain, close
 * and free refused inside the drain's own callback.
 * Usage: client_roundtrip HOST:PORT */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, poll under -std=c11 */

#include <poll.h>

#include "check.h"

typedef struct {
    counter messages;
    counter presence_online;
    counter errors;
    ringrelay_event *kept; /* one retained message */
} seen;

static void on_event(void *userdata, ringrelay_client *client, const ringrelay_event *ev) {
    seen *s = (seen *)userdata;
    CHECK(client != NULL);
    size_t len = 0;
    switch (ringrelay_event_get_kind(ev)) {
    case RINGRELAY_EVENT_KIND_MESSAGE: {
        const uint8_t *p = ringrelay_event_get_payload(ev, &len);
        CHECK(bytes_eq(p, len, "to-callback"));
        const uint8_t *from = ringrelay_event_get_client_id(ev, &len);
        CHECK(bytes_eq(from, len, "queue-client"));
        CHECK(ringrelay_event_get_topic(ev, &len) == NULL && len == 0);
        if (s->kept == NULL) OK(ringrelay_event_retain(ev, &s->kept));
        counter_add(&s->messages, 1);
        break;
    }
    case RINGRELAY_EVENT_KIND_PRESENCE:
        if (ringrelay_event_get_online(ev)) counter_add(&s->presence_online, 1);
        break;
    case RINGRELAY_EVENT_KIND_ERROR:
        counter_add(&s->errors, 1);
        break;
    default:
        break;
    }
}

typedef struct {
    int direct, topic, group, own_echo, own_loud;
    int refused_inside; /* drain, close and free refused inside the drain's own callback */
} drained;

static void on_drained(void *userdata, ringrelay_client *client, const ringrelay_event *ev) {
    drained *d = (drained *)userdata;
    size_t len = 0, tlen = 0;
    if (!d->refused_inside) {
        /* Inside the drain's callback: draining again, closing or freeing the same client is
         * refused (no recursion, no freed handle under the running drain). */
        CHECK(ringrelay_client_drain(client, on_drained, d, 1, NULL) ==
              RINGRELAY_STATUS_IN_CALLBACK);
        CHECK(ringrelay_client_close(client) == RINGRELAY_STATUS_IN_CALLBACK);
        CHECK(ringrelay_client_free(client) == RINGRELAY_STATUS_IN_CALLBACK);
        d->refused_inside = 1;
    }
    if (ringrelay_event_get_kind(ev) != RINGRELAY_EVENT_KIND_MESSAGE) return;
    const uint8_t *p = ringrelay_event_get_payload(ev, &len);
    const uint8_t *t = ringrelay_event_get_topic(ev, &tlen);
    if (t == NULL) {
        CHECK(bytes_eq(p, len, "to-queue"));
        d->direct++;
    } else if (bytes_eq(t, tlen, "news")) {
        CHECK(bytes_eq(p, len, "headline"));
        d->topic++;
    } else if (bytes_eq(t, tlen, "jobs")) {
        d->group++;
    } else if (bytes_eq(t, tlen, "quiet")) {
        /* "hush" was published without echo: it must never come back to its sender. "loud",
         * published after it with echo, must: one publisher's messages to one subscriber keep
         * their order, so an echoed "hush" would arrive before "loud". */
        if (bytes_eq(p, len, "hush")) d->own_echo++;
        if (bytes_eq(p, len, "loud")) d->own_loud++;
    }
}

/* Drains the queue client until `done` says so, waiting on its fd with poll(2). */
static void drain_until(ringrelay_client *q, drained *d, int (*done)(const drained *)) {
    struct pollfd pfd = {.fd = ringrelay_client_fd(q), .events = POLLIN, .revents = 0};
    CHECK(pfd.fd >= 0);
    for (int rounds = 0; !done(d); rounds++) {
        CHECK(rounds < 1000);
        CHECK(poll(&pfd, 1, WAIT_MS) == 1);
        size_t n = 0;
        OK(ringrelay_client_drain(q, on_drained, d, 64, &n));
    }
}

static int got_first(const drained *d) { return d->direct == 1 && d->topic == 1; }
static int got_group(const drained *d) { return d->group == 3 && d->own_loud == 1; }

int main(int argc, char **argv) {
    CHECK(argc == 2);
    const char *servers = argv[1];
    CHECK(ringrelay_version_number() == RINGRELAY_VERSION_NUMBER);
    CHECK(strncmp(ringrelay_version(), "ringrelay ", 10) == 0);
    CHECK(strcmp(ringrelay_status_str(RINGRELAY_STATUS_AUTH_FAILED),
                 "RINGRELAY_STATUS_AUTH_FAILED") == 0);
    CHECK(strcmp(ringrelay_status_str(9999), "RINGRELAY_STATUS_UNKNOWN") == 0);

    /* Bad arguments: a status and words, and the output left alone. */
    ringrelay_client *never = (ringrelay_client *)&servers;
    CHECK(ringrelay_client_connect(servers, NULL, 0, NULL, 0, NULL, &never) ==
          RINGRELAY_STATUS_INVALID_ARGUMENT);
    CHECK(never == (ringrelay_client *)&servers);
    char err[256];
    size_t full = ringrelay_last_error(err, sizeof err);
    CHECK(full > 0 && strstr(err, "empty") != NULL);
    CHECK(ringrelay_last_error(NULL, 0) == full);
    ringrelay_client_options brief;
    ringrelay_client_options_init(&brief, sizeof brief);
    brief.reconnect_timeout_ms = 200; /* no relay listens on port 1: give up soon */
    CHECK(ringrelay_client_connect("127.0.0.1:1", ID("x"), NULL, 0, &brief, &never) ==
          RINGRELAY_STATUS_CONNECT_FAILED);
    CHECK(ringrelay_client_send(NULL, ID("a"), ID("b")) == RINGRELAY_STATUS_INVALID_ARGUMENT);

    seen s;
    counter_init(&s.messages);
    counter_init(&s.presence_online);
    counter_init(&s.errors);
    s.kept = NULL;
    ringrelay_client_options opts;
    ringrelay_client_options_init(&opts, sizeof opts);
    opts.on_event = on_event;
    opts.userdata = &s;
    ringrelay_client *cb = NULL;
    OK(ringrelay_client_connect(servers, ID("callback-client"), NULL, 0, &opts, &cb));
    CHECK(ringrelay_client_fd(cb) == -1);
    CHECK(ringrelay_client_drain(cb, on_drained, NULL, 1, NULL) == RINGRELAY_STATUS_BAD_STATE);

    ringrelay_client *q = NULL;
    OK(ringrelay_client_connect(servers, ID("queue-client"), NULL, 0, NULL, &q));
    OK(ringrelay_client_subscribe(q, ID("news"), NULL, 0));
    OK(ringrelay_client_subscribe(q, ID("jobs"), ID("workers")));
    OK(ringrelay_client_subscribe(q, ID("quiet"), NULL, 0));
    OK(ringrelay_client_flush(q, WAIT_MS));
    OK(ringrelay_client_watch(cb, ID("queue-client")));
    CHECK(counter_wait(&s.presence_online, 1));

    /* Callback client to queue client: direct and on a topic. */
    OK(ringrelay_client_send(cb, ID("queue-client"), ID("to-queue")));
    OK(ringrelay_client_publish(cb, ID("news"), ID("headline")));
    OK(ringrelay_client_flush(cb, 0));
    drained d = {0, 0, 0, 0, 0, 0};
    drain_until(q, &d, got_first);
    CHECK(d.refused_inside);

    /* The group has one member: it gets every message. No echo: never back to the sender. */
    for (int i = 0; i < 3; i++) OK(ringrelay_client_publish(cb, ID("jobs"), ID("job")));
    OK(ringrelay_client_publish_no_echo(q, ID("quiet"), ID("hush")));
    OK(ringrelay_client_publish(q, ID("quiet"), ID("loud")));
    OK(ringrelay_client_flush(q, WAIT_MS));
    OK(ringrelay_client_flush(cb, WAIT_MS));
    drain_until(q, &d, got_group);
    CHECK(d.own_echo == 0);

    /* Queue client to callback client. */
    OK(ringrelay_client_send(q, ID("callback-client"), ID("to-callback")));
    OK(ringrelay_client_flush(q, 0));
    CHECK(counter_wait(&s.messages, 1));

    /* An unknown target: an ERROR event, the connection stays. */
    OK(ringrelay_client_send(cb, ID("nobody-here"), ID("lost")));
    OK(ringrelay_client_flush(cb, WAIT_MS));
    CHECK(counter_wait(&s.errors, 1));

    /* A retained event outlives its callback; a borrowed one cannot be freed. */
    size_t len = 0;
    const uint8_t *kept_payload = ringrelay_event_get_payload(s.kept, &len);
    CHECK(bytes_eq(kept_payload, len, "to-callback"));
    OK(ringrelay_event_free(s.kept));
    CHECK(ringrelay_event_free(NULL) == RINGRELAY_STATUS_OK);

    OK(ringrelay_client_close(q));
    CHECK(ringrelay_client_send(q, ID("x"), ID("y")) == RINGRELAY_STATUS_CLOSED);
    OK(ringrelay_client_close(q));
    OK(ringrelay_client_free(q));
    OK(ringrelay_client_free(cb));
    OK(ringrelay_client_free(NULL));
    counter_destroy(&s.messages);
    counter_destroy(&s.presence_online);
    counter_destroy(&s.errors);
    printf("PASS client_roundtrip\n");
    return 0;
}
