/*
 * One acceptance scenario of the NATS client protocol, run with nats.c (Debian's libnats,
 * 3.4). Built by cli/tests/nats_clients.rs with `cc client.c -lnats`.
 *
 * Usage: client SCENARIO URL [URL ...]
 *
 * Prints "PASS SCENARIO: detail" and exits 0, or "FAIL SCENARIO: reason" and exits 1. Every
 * wait is bounded; the test also kills the program after its own bound. The same scenarios
 * are written for nats-py (client.py beside this file) and async-nats (in the test), with
 * the same expectations.
 *
 * Scenario "reconnect" talks to the test: once connected it prints "CONNECTED HOST:PORT" (the
 * node it is on, which the test then kills) and waits to be reconnected to another node.
 */
#include <nats/nats.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAIT_MS 5000           /* bound on one wait for something a server does promptly */
#define REQUEST_TIMEOUT_MS 2000
#define QUIET_MS 100           /* after the last expected message, no extra copy this long */

static const char *scenario = "?";
static const char **urls;
static int url_count;

static void fail(const char *fmt, ...) {
    va_list ap;
    printf("FAIL %s: ", scenario);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    exit(1);
}

/* A library call that must succeed; on failure, the call, its status and the last error. */
#define CHECK(call)                                                                        \
    do {                                                                                   \
        natsStatus s_ = (call);                                                            \
        if (s_ != NATS_OK)                                                                 \
            fail("%s: %s (%s)", #call, natsStatus_GetText(s_), nats_GetLastError(NULL));   \
    } while (0)

static void on_reconnected(natsConnection *nc, void *closure);

static natsConnection *connect_with(bool reconnect) {
    natsOptions *opts = NULL;
    natsConnection *nc = NULL;
    CHECK(natsOptions_Create(&opts));
    CHECK(natsOptions_SetServers(opts, urls, url_count));
    CHECK(natsOptions_SetNoRandomize(opts, true));
    CHECK(natsOptions_SetTimeout(opts, WAIT_MS));
    CHECK(natsOptions_SetAllowReconnect(opts, reconnect));
    if (reconnect) {
        CHECK(natsOptions_SetMaxReconnect(opts, 50));
        CHECK(natsOptions_SetReconnectWait(opts, 100));
        CHECK(natsOptions_SetReconnectJitter(opts, 0, 0));
        CHECK(natsOptions_SetReconnectedCB(opts, on_reconnected, NULL));
    }
    CHECK(natsConnection_Connect(&nc, opts));
    natsOptions_Destroy(opts);
    return nc;
}

static natsConnection *connect_plain(void) { return connect_with(false); }

static void flush(natsConnection *nc) { CHECK(natsConnection_FlushTimeout(nc, WAIT_MS)); }

static natsSubscription *subscribe(natsConnection *nc, const char *subject) {
    natsSubscription *sub = NULL;
    CHECK(natsConnection_SubscribeSync(&sub, nc, subject));
    return sub;
}

/* The next message of `sub` within `timeout_ms`; fails naming `what` otherwise. */
static natsMsg *next_msg(natsSubscription *sub, const char *what, int64_t timeout_ms) {
    natsMsg *msg = NULL;
    natsStatus s = natsSubscription_NextMsg(&msg, sub, timeout_ms);
    if (s == NATS_TIMEOUT)
        fail("no message for %s within %lld ms", what, (long long)timeout_ms);
    if (s != NATS_OK)
        fail("waiting for %s: %s (%s)", what, natsStatus_GetText(s), nats_GetLastError(NULL));
    return msg;
}

/* The message's payload as a NUL-terminated string (copied into `buf`). */
static const char *text(natsMsg *msg, char *buf, size_t len) {
    int n = natsMsg_GetDataLength(msg);
    if ((size_t)n >= len)
        n = (int)len - 1;
    memcpy(buf, natsMsg_GetData(msg), (size_t)n);
    buf[n] = '\0';
    return buf;
}

static void expect_payload(natsMsg *msg, const char *want, const char *what) {
    char buf[256];
    if (strcmp(text(msg, buf, sizeof buf), want) != 0)
        fail("%s: want payload \"%s\", got \"%s\"", what, want, buf);
}

/* Fails if a message comes to `sub` within QUIET_MS. */
static void no_more(natsSubscription *sub, const char *what) {
    natsMsg *msg = NULL;
    natsStatus s = natsSubscription_NextMsg(&msg, sub, QUIET_MS);
    if (s == NATS_OK) {
        char buf[256];
        fail("%s: unexpected extra message %s \"%s\"", what, natsMsg_GetSubject(msg),
             text(msg, buf, sizeof buf));
    }
    if (s != NATS_TIMEOUT)
        fail("%s: %s", what, natsStatus_GetText(s));
}

static void close_conn(natsConnection *nc) {
    natsConnection_Close(nc);
    natsConnection_Destroy(nc);
}

static double ms_since(int64_t start_ms) { return (double)(nats_Now() - start_ms); }

static char detail[1024];

static void pubsub(void) {
    natsConnection *a = connect_plain(), *b = connect_plain();
    natsSubscription *sub = subscribe(a, "ps.greet"), *other = subscribe(a, "ps.other");
    flush(a);
    char want[16];
    for (int i = 0; i < 3; i++) {
        snprintf(want, sizeof want, "m%d", i);
        CHECK(natsConnection_PublishString(b, "ps.greet", want));
    }
    flush(b);
    for (int i = 0; i < 3; i++) {
        natsMsg *msg = next_msg(sub, "ps.greet", WAIT_MS);
        if (strcmp(natsMsg_GetSubject(msg), "ps.greet") != 0)
            fail("subject %s", natsMsg_GetSubject(msg));
        snprintf(want, sizeof want, "m%d", i);
        expect_payload(msg, want, "ps.greet");
        natsMsg_Destroy(msg);
    }
    no_more(sub, "ps.greet");
    no_more(other, "ps.other (nothing published there)");
    natsSubscription_Destroy(sub);
    natsSubscription_Destroy(other);
    close_conn(a);
    close_conn(b);
    snprintf(detail, sizeof detail, "3 messages in order");
}

#define QUEUE_TOTAL 20

static void queue(void) {
    natsConnection *conn[2];
    natsSubscription *work[2], *done[2];
    for (int m = 0; m < 2; m++) {
        conn[m] = connect_plain();
        CHECK(natsConnection_QueueSubscribeSync(&work[m], conn[m], "q.work", "workers"));
        done[m] = subscribe(conn[m], "q.done");
        flush(conn[m]);
    }
    natsConnection *p = connect_plain();
    char buf[32];
    for (int i = 0; i < QUEUE_TOTAL; i++) {
        snprintf(buf, sizeof buf, "%d", i);
        CHECK(natsConnection_PublishString(p, "q.work", buf));
    }
    /* Not in the group: every member gets it, after the work (one publisher's order). */
    CHECK(natsConnection_PublishString(p, "q.done", "end"));
    flush(p);
    int seen[QUEUE_TOTAL] = {0};
    int counts[2] = {0, 0};
    for (int m = 0; m < 2; m++) {
        natsMsg_Destroy(next_msg(done[m], "q.done", WAIT_MS));
        for (;;) {
            natsMsg *msg = NULL;
            natsStatus s = natsSubscription_NextMsg(&msg, work[m], QUIET_MS);
            if (s == NATS_TIMEOUT)
                break;
            if (s != NATS_OK)
                fail("q.work: %s", natsStatus_GetText(s));
            int i = atoi(text(msg, buf, sizeof buf));
            if (i < 0 || i >= QUEUE_TOTAL)
                fail("q.work: unexpected payload %s", buf);
            seen[i]++;
            counts[m]++;
            natsMsg_Destroy(msg);
        }
        natsSubscription_Destroy(work[m]);
        natsSubscription_Destroy(done[m]);
        close_conn(conn[m]);
    }
    close_conn(p);
    for (int i = 0; i < QUEUE_TOTAL; i++)
        if (seen[i] != 1)
            fail("message %d reached %d members, not exactly one (per member %d+%d)", i,
                 seen[i], counts[0], counts[1]);
    snprintf(detail, sizeof detail, "%d messages split %d+%d", QUEUE_TOTAL, counts[0],
             counts[1]);
}

static void wildcards(void) {
    /* Published in this order; what each pattern must receive, in order. */
    static const char *publishes[] = {"wc", "other.a", "wc.a.y", "wc.b", "wc.a.z"};
    static const struct {
        const char *pattern;
        const char *want[3];
        int count;
    } expect[] = {
        {"wc.*", {"wc.b"}, 1},
        {"wc.>", {"wc.a.y", "wc.b", "wc.a.z"}, 3},
        {"wc.*.z", {"wc.a.z"}, 1},
    };
    natsConnection *s = connect_plain(), *p = connect_plain();
    natsSubscription *subs[3];
    for (int k = 0; k < 3; k++)
        subs[k] = subscribe(s, expect[k].pattern);
    flush(s);
    for (size_t i = 0; i < sizeof publishes / sizeof publishes[0]; i++)
        CHECK(natsConnection_PublishString(p, publishes[i], publishes[i]));
    flush(p);
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < expect[k].count; i++) {
            natsMsg *msg = next_msg(subs[k], expect[k].pattern, WAIT_MS);
            if (strcmp(natsMsg_GetSubject(msg), expect[k].want[i]) != 0)
                fail("%s: message %d: want %s, got %s", expect[k].pattern, i,
                     expect[k].want[i], natsMsg_GetSubject(msg));
            expect_payload(msg, expect[k].want[i], expect[k].pattern);
            natsMsg_Destroy(msg);
        }
        no_more(subs[k], expect[k].pattern);
        natsSubscription_Destroy(subs[k]);
    }
    close_conn(s);
    close_conn(p);
    snprintf(detail, sizeof detail, "wc.* wc.> wc.*.z as expected");
}

static void flush_scenario(void) {
    enum { COUNT = 100 };
    natsConnection *s = connect_plain(), *p = connect_plain();
    natsSubscription *sub = subscribe(s, "fl.data");
    flush(s);
    char buf[32];
    for (int i = 0; i < COUNT; i++) {
        snprintf(buf, sizeof buf, "%d", i);
        CHECK(natsConnection_PublishString(p, "fl.data", buf));
    }
    int64_t start = nats_Now();
    natsStatus st = natsConnection_FlushTimeout(p, WAIT_MS);
    if (st != NATS_OK)
        fail("flush: %s within %d ms", natsStatus_GetText(st), WAIT_MS);
    double took = ms_since(start);
    for (int i = 0; i < COUNT; i++) {
        natsMsg *msg = next_msg(sub, "fl.data", WAIT_MS);
        snprintf(buf, sizeof buf, "%d", i);
        expect_payload(msg, buf, "fl.data");
        natsMsg_Destroy(msg);
    }
    natsSubscription_Destroy(sub);
    close_conn(s);
    close_conn(p);
    snprintf(detail, sizeof detail,
             "flush after %d publishes took %.0f ms; all arrived in order", COUNT, took);
}

/* The first reply subject the responder saw (written by the library's thread). */
static pthread_mutex_t reply_mu = PTHREAD_MUTEX_INITIALIZER;
static char first_reply[256];

static void first_reply_copy(char *buf, size_t len) {
    pthread_mutex_lock(&reply_mu);
    snprintf(buf, len, "%s", first_reply[0] ? first_reply : "none");
    pthread_mutex_unlock(&reply_mu);
}

/* The responder: answers "echo:" + payload on the request's reply subject. */
static void on_request(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
    (void)sub;
    (void)closure;
    const char *reply = natsMsg_GetReply(msg);
    pthread_mutex_lock(&reply_mu);
    if (first_reply[0] == '\0')
        snprintf(first_reply, sizeof first_reply, "%s", reply ? reply : "(none)");
    pthread_mutex_unlock(&reply_mu);
    if (reply != NULL && reply[0] != '\0') {
        char buf[256], out[300];
        snprintf(out, sizeof out, "echo:%s", text(msg, buf, sizeof buf));
        natsConnection_PublishString(nc, reply, out);
    }
    natsMsg_Destroy(msg);
}

static void request(void) {
    natsConnection *r = connect_plain(), *q = connect_plain();
    natsSubscription *sub = NULL;
    CHECK(natsConnection_Subscribe(&sub, r, "svc.echo", on_request, NULL));
    flush(r);
    for (int i = 0; i < 3; i++) {
        char body[32], want[64];
        snprintf(body, sizeof body, "ping-%d", i);
        snprintf(want, sizeof want, "echo:%s", body);
        natsMsg *reply = NULL;
        natsStatus s = natsConnection_RequestString(&reply, q, "svc.echo", body,
                                                    REQUEST_TIMEOUT_MS);
        if (s == NATS_TIMEOUT) {
            char seen[256];
            first_reply_copy(seen, sizeof seen);
            fail("request %d timed out after %d ms (reply subject the responder saw: %s)", i,
                 REQUEST_TIMEOUT_MS, seen);
        }
        if (s == NATS_NO_RESPONDERS)
            fail("request %d: no responders, but one is subscribed", i);
        if (s != NATS_OK)
            fail("request %d: %s (%s)", i, natsStatus_GetText(s), nats_GetLastError(NULL));
        expect_payload(reply, want, "reply");
        natsMsg_Destroy(reply);
    }
    natsSubscription_Destroy(sub);
    close_conn(q);
    close_conn(r);
    char seen[256];
    first_reply_copy(seen, sizeof seen);
    snprintf(detail, sizeof detail, "3 requests answered (reply subject %s)", seen);
}

static void expect_header(natsMsg *msg, const char *key, const char *want) {
    const char *got = NULL;
    natsStatus s = natsMsgHeader_Get(msg, key, &got);
    if (s != NATS_OK)
        fail("header %s: %s", key, natsStatus_GetText(s));
    if (strcmp(got, want) != 0)
        fail("header %s: want \"%s\", got \"%s\"", key, want, got);
}

static void headers(void) {
    natsConnection *s = connect_plain(), *p = connect_plain();
    natsSubscription *sub = subscribe(s, "hdr.a");
    flush(s);
    natsMsg *out = NULL;
    CHECK(natsMsg_Create(&out, "hdr.a", NULL, "body", 4));
    CHECK(natsMsgHeader_Set(out, "X-Test", "v1"));
    CHECK(natsMsgHeader_Set(out, "X-Other", "two words"));
    CHECK(natsConnection_PublishMsg(p, out));
    natsMsg_Destroy(out);
    CHECK(natsConnection_PublishString(p, "hdr.a", "plain"));
    flush(p);
    natsMsg *msg = next_msg(sub, "hdr.a with headers", WAIT_MS);
    expect_payload(msg, "body", "hdr.a with headers");
    expect_header(msg, "X-Test", "v1");
    expect_header(msg, "X-Other", "two words");
    natsMsg_Destroy(msg);
    msg = next_msg(sub, "hdr.a without headers", WAIT_MS);
    expect_payload(msg, "plain", "hdr.a without headers");
    const char **keys = NULL;
    int count = 0;
    natsStatus st = natsMsgHeader_Keys(msg, &keys, &count);
    if (st == NATS_OK && count > 0)
        fail("a message published without headers has %d header(s), the first %s", count,
             keys[0]);
    free((void *)keys);
    natsMsg_Destroy(msg);
    natsSubscription_Destroy(sub);
    close_conn(s);
    close_conn(p);
    snprintf(detail, sizeof detail, "2 headers carried, none on the plain message");
}

static void no_responders(void) {
    natsConnection *q = connect_plain();
    natsMsg *reply = NULL;
    int64_t start = nats_Now();
    natsStatus s = natsConnection_RequestString(&reply, q, "nobody.home", "x", REQUEST_TIMEOUT_MS);
    double took = ms_since(start);
    if (s == NATS_TIMEOUT)
        fail("timed out after %d ms instead of a no responders error", REQUEST_TIMEOUT_MS);
    if (s == NATS_OK)
        fail("got a reply from nobody");
    if (s != NATS_NO_RESPONDERS)
        fail("want NATS_NO_RESPONDERS, got %s", natsStatus_GetText(s));
    close_conn(q);
    snprintf(detail, sizeof detail, "no responders error after %.0f ms", took);
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static bool reconnected;

static void on_reconnected(natsConnection *nc, void *closure) {
    (void)nc;
    (void)closure;
    pthread_mutex_lock(&mu);
    reconnected = true;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&mu);
}

/* "HOST:PORT" of the connected server, from its URL "nats://HOST:PORT". */
static void connected_to(natsConnection *nc, char *buf, size_t len) {
    char url[256];
    CHECK(natsConnection_GetConnectedUrl(nc, url, sizeof url));
    const char *at = strstr(url, "://");
    snprintf(buf, len, "%s", at ? at + 3 : url);
}

static void reconnect(void) {
    natsConnection *nc = connect_with(true);
    natsSubscription *before = subscribe(nc, "rc.before");
    flush(nc);
    CHECK(natsConnection_PublishString(nc, "rc.before", "one"));
    natsMsg *msg = next_msg(before, "rc.before on the first node", WAIT_MS);
    expect_payload(msg, "one", "rc.before");
    natsMsg_Destroy(msg);
    char first[256], second[256];
    connected_to(nc, first, sizeof first);
    printf("CONNECTED %s\n", first);
    fflush(stdout);

    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 20;
    pthread_mutex_lock(&mu);
    while (!reconnected) {
        if (pthread_cond_timedwait(&cond, &mu, &deadline) != 0 && !reconnected) {
            pthread_mutex_unlock(&mu);
            fail("not reconnected within 20 s after the node was killed");
        }
    }
    pthread_mutex_unlock(&mu);
    connected_to(nc, second, sizeof second);
    printf("RECONNECTED %s\n", second);
    fflush(stdout);
    if (strcmp(first, second) == 0)
        fail("reconnected to the killed node %s", first);
    /* The subscription made before is made again on the new node by the client. */
    CHECK(natsConnection_PublishString(nc, "rc.before", "two"));
    msg = next_msg(before, "rc.before after the reconnect", WAIT_MS);
    expect_payload(msg, "two", "rc.before after the reconnect");
    natsMsg_Destroy(msg);
    natsSubscription *after = subscribe(nc, "rc.after");
    flush(nc);
    CHECK(natsConnection_PublishString(nc, "rc.after", "three"));
    msg = next_msg(after, "rc.after on the second node", WAIT_MS);
    expect_payload(msg, "three", "rc.after");
    natsMsg_Destroy(msg);
    natsSubscription_Destroy(before);
    natsSubscription_Destroy(after);
    close_conn(nc);
    snprintf(detail, sizeof detail, "moved from %s to %s; pub/sub works there", first, second);
}

static const struct {
    const char *name;
    void (*run)(void);
} scenarios[] = {
    {"pubsub", pubsub},       {"queue", queue},     {"wildcards", wildcards},
    {"flush", flush_scenario}, {"request", request}, {"headers", headers},
    {"no_responders", no_responders}, {"reconnect", reconnect},
};

int main(int argc, char **argv) {
    size_t n = sizeof scenarios / sizeof scenarios[0];
    size_t k = n;
    if (argc >= 3)
        for (k = 0; k < n && strcmp(scenarios[k].name, argv[1]) != 0; k++)
            ;
    if (k == n) {
        fprintf(stderr, "usage: %s SCENARIO URL [URL ...]; scenarios:", argv[0]);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %s", scenarios[i].name);
        fprintf(stderr, "\n");
        return 2;
    }
    scenario = argv[1];
    urls = (const char **)&argv[2];
    url_count = argc - 2;
    scenarios[k].run();
    printf("PASS %s: %s\n", scenario, detail);
    fflush(stdout);
    nats_Close();
    return 0;
}
