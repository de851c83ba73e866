/* client: a chat client for examples/c/chat_server.c, and an example of a host event loop:
 * it waits with poll(2) on standard input and on ringrelay_client_fd() (queue mode), and
 * drains events on its own thread.
 *
 * Usage: client SERVERS ID [EXPECT]
 *   SERVERS  comma-separated HOST:PORT list (the client moves to another if one fails)
 *   ID       this client's id in the room
 *   EXPECT   once standard input ends, keep receiving until this many lines came (default 0),
 *            for at most 10 s
 * Prints "ready" once in the room, then "SENDER: LINE" for each line of the others.
 *
 * Build: cc -std=c11 client.c $(pkg-config --cflags --libs --static ringrelay) */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ringrelay.h"

static long received = 0;

static void on_event(void *userdata, ringrelay_client *client, const ringrelay_event *ev) {
    (void)userdata;
    (void)client;
    size_t from_len = 0, len = 0;
    switch (ringrelay_event_get_kind(ev)) {
    case RINGRELAY_EVENT_KIND_MESSAGE: {
        const uint8_t *from = ringrelay_event_get_client_id(ev, &from_len);
        const uint8_t *line = ringrelay_event_get_payload(ev, &len);
        printf("%.*s: %.*s\n", (int)from_len, (const char *)from, (int)len, (const char *)line);
        received++;
        break;
    }
    case RINGRELAY_EVENT_KIND_RECONNECTED: {
        const uint8_t *server = ringrelay_event_get_text(ev, &len);
        printf("* reconnected to %.*s\n", (int)len, (const char *)server);
        break;
    }
    case RINGRELAY_EVENT_KIND_CLOSED: {
        const uint8_t *why = ringrelay_event_get_text(ev, &len);
        printf("* closed: %.*s\n", (int)len, (const char *)why);
        break;
    }
    default:
        break;
    }
    fflush(stdout);
}

/* Standard input as it arrives: whole lines go to the room, a partial one waits for the rest
 * (poll(2) said readable, so read(2) never blocks here, and events keep being drained). */
typedef struct {
    char bytes[4096];
    size_t len;
} line_buffer;

static ringrelay_status say(ringrelay_client *c, const char *line, size_t len) {
    return ringrelay_client_publish_no_echo(c, (const uint8_t *)"chat", 4, (const uint8_t *)line,
                                            len);
}

/* Publishes every complete line in `in` and keeps the partial tail; a line longer than the
 * buffer goes out in pieces of the buffer's size. */
static ringrelay_status say_lines(ringrelay_client *c, line_buffer *in) {
    size_t start = 0;
    ringrelay_status s = RINGRELAY_STATUS_OK;
    for (size_t i = 0; i < in->len && s == RINGRELAY_STATUS_OK; i++) {
        if (in->bytes[i] == '\n') {
            s = say(c, in->bytes + start, i - start);
            start = i + 1;
        }
    }
    memmove(in->bytes, in->bytes + start, in->len - start);
    in->len -= start;
    if (s == RINGRELAY_STATUS_OK && in->len == sizeof in->bytes) {
        s = say(c, in->bytes, in->len);
        in->len = 0;
    }
    return s;
}

static int fail(const char *what, ringrelay_status status) {
    char err[512];
    ringrelay_last_error(err, sizeof err);
    fprintf(stderr, "client: %s: %s (%s)\n", what, ringrelay_status_str(status), err);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: client SERVERS ID [EXPECT]\n");
        return 2;
    }
    long expect = argc > 3 ? strtol(argv[3], NULL, 10) : 0;
    ringrelay_client *c = NULL;
    ringrelay_status s = ringrelay_client_connect(argv[1], (const uint8_t *)argv[2],
                                                  strlen(argv[2]), NULL, 0, NULL, &c);
    if (s != RINGRELAY_STATUS_OK) return fail("connect", s);
    if ((s = ringrelay_client_subscribe(c, (const uint8_t *)"chat", 4, NULL, 0)) !=
            RINGRELAY_STATUS_OK ||
        (s = ringrelay_client_flush(c, 5000)) != RINGRELAY_STATUS_OK) {
        ringrelay_client_free(c);
        return fail("join", s);
    }
    printf("ready\n");
    fflush(stdout);

    struct pollfd fds[2] = {{.fd = ringrelay_client_fd(c), .events = POLLIN, .revents = 0},
                            {.fd = STDIN_FILENO, .events = POLLIN, .revents = 0}};
    int stdin_open = 1;
    int idle_ms = 0;
    line_buffer in = {.len = 0};
    while (stdin_open || (received < expect && idle_ms < 10000)) {
        int n = poll(fds, stdin_open ? 2 : 1, 100);
        if (n == 0) idle_ms += stdin_open ? 0 : 100;
        if (fds[0].revents & POLLIN) {
            s = ringrelay_client_drain(c, on_event, NULL, 256, NULL);
            if (s != RINGRELAY_STATUS_OK) break;
        }
        if (stdin_open && (fds[1].revents & (POLLIN | POLLHUP))) {
            ssize_t got = read(STDIN_FILENO, in.bytes + in.len, sizeof in.bytes - in.len);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) {
                /* The end of input (a last line without its newline is said too). */
                if (in.len > 0 && (s = say(c, in.bytes, in.len)) != RINGRELAY_STATUS_OK) break;
                stdin_open = 0;
                /* Everything said so far has reached the relay before we may leave. */
                ringrelay_client_flush(c, 5000);
                continue;
            }
            in.len += (size_t)got;
            if ((s = say_lines(c, &in)) != RINGRELAY_STATUS_OK) break;
        }
    }
    ringrelay_client_free(c);
    if (s != RINGRELAY_STATUS_OK) return fail("chat", s);
    return received >= expect ? 0 : 3;
}
