/* Clients over TLS with a relay that asks every client for a certificate from its CA (mutual
 * TLS): one set up from PEM files, one from PEM in memory, exchanging messages both ways; the
 * setters' refusals (a missing file, a key that is not the certificate's), the connect's (a
 * certificate without its key), and a client that trusts another CA refused as
 * RINGRELAY_STATUS_TLS.
 * Usage: client_tls TLS_HOST:PORT PKI_DIR (ca.pem, other-ca.pem, client.pem/.key, server.key) */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */

#include "check.h"

typedef struct {
    counter messages;
    char last[64];
} inbox;

static void on_event(void *userdata, ringrelay_client *client, const ringrelay_event *ev) {
    inbox *in = (inbox *)userdata;
    (void)client;
    if (ringrelay_event_get_kind(ev) != RINGRELAY_EVENT_KIND_MESSAGE) return;
    size_t len = 0;
    const uint8_t *p = ringrelay_event_get_payload(ev, &len);
    CHECK(len < sizeof in->last);
    pthread_mutex_lock(&in->messages.lock);
    memcpy(in->last, p, len);
    in->last[len] = '\0';
    pthread_mutex_unlock(&in->messages.lock);
    counter_add(&in->messages, 1);
}

/* `dir`/`name` into `buf`. */
static const char *in_dir(char *buf, size_t size, const char *dir, const char *name) {
    CHECK((size_t)snprintf(buf, size, "%s/%s", dir, name) < size);
    return buf;
}

/* The whole file at `path`, NUL-terminated, in `buf`; returns its length. */
static size_t slurp(const char *path, char *buf, size_t size) {
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    size_t n = fread(buf, 1, size - 1, f);
    CHECK(feof(f));
    fclose(f);
    buf[n] = '\0';
    return n;
}

/* The last error contains `words`. */
static int last_error_has(const char *words) {
    char err[1024];
    ringrelay_last_error(err, sizeof err);
    return strstr(err, words) != NULL;
}

int main(int argc, char **argv) {
    CHECK(argc == 3);
    const char *servers = argv[1], *dir = argv[2];
    char ca[512], other_ca[512], cert[512], key[512], server_key[512], missing[512];
    in_dir(ca, sizeof ca, dir, "ca.pem");
    in_dir(other_ca, sizeof other_ca, dir, "other-ca.pem");
    in_dir(cert, sizeof cert, dir, "client.pem");
    in_dir(key, sizeof key, dir, "client.key");
    in_dir(server_key, sizeof server_key, dir, "server.key");
    in_dir(missing, sizeof missing, dir, "missing.pem");
    CHECK(strcmp(ringrelay_status_str(RINGRELAY_STATUS_TLS), "RINGRELAY_STATUS_TLS") == 0);

    /* Refused by the setters, the options left as they were. */
    ringrelay_client_options files;
    ringrelay_client_options_init(&files, sizeof files);
    CHECK(ringrelay_client_options_set_tls_ca_file(&files, missing) == RINGRELAY_STATUS_CONFIG);
    CHECK(last_error_has("tls_ca_file") && last_error_has("cannot read"));
    CHECK(files.tls_ca_file == NULL);
    OK(ringrelay_client_options_set_tls_ca_file(&files, ca));
    OK(ringrelay_client_options_set_tls_cert_file(&files, cert));
    CHECK(ringrelay_client_options_set_tls_key_file(&files, server_key) ==
          RINGRELAY_STATUS_CONFIG);
    CHECK(last_error_has("does not match the certificate"));

    /* Refused by the connect: a certificate without its key. */
    ringrelay_client *never = NULL;
    CHECK(ringrelay_client_connect(servers, ID("tls-files"), NULL, 0, &files, &never) ==
          RINGRELAY_STATUS_CONFIG);
    CHECK(never == NULL && last_error_has("needs its private key"));

    /* From files, naming the relay as its certificate does. */
    OK(ringrelay_client_options_set_tls_key_file(&files, key));
    OK(ringrelay_client_options_set_tls_server_name(&files, "localhost"));
    inbox a_in, b_in;
    counter_init(&a_in.messages);
    counter_init(&b_in.messages);
    files.on_event = on_event;
    files.userdata = &a_in;
    ringrelay_client *a = NULL;
    OK(ringrelay_client_connect(servers, ID("tls-files"), NULL, 0, &files, &a));

    /* From PEM in memory; the server name defaults to the host of the list (127.0.0.1). */
    static char ca_pem[16384], cert_pem[16384], key_pem[16384];
    size_t ca_len = slurp(ca, ca_pem, sizeof ca_pem);
    size_t cert_len = slurp(cert, cert_pem, sizeof cert_pem);
    size_t key_len = slurp(key, key_pem, sizeof key_pem);
    ringrelay_client_options memory;
    ringrelay_client_options_init(&memory, sizeof memory);
    OK(ringrelay_client_options_set_tls_ca_pem(&memory, (const uint8_t *)ca_pem, ca_len));
    OK(ringrelay_client_options_set_tls_cert_pem(&memory, (const uint8_t *)cert_pem, cert_len));
    OK(ringrelay_client_options_set_tls_key_pem(&memory, (const uint8_t *)key_pem, key_len));
    memory.on_event = on_event;
    memory.userdata = &b_in;
    ringrelay_client *b = NULL;
    OK(ringrelay_client_connect(servers, ID("tls-memory"), NULL, 0, &memory, &b));

    OK(ringrelay_client_send(a, ID("tls-memory"), ID("hello over tls")));
    OK(ringrelay_client_flush(a, WAIT_MS));
    CHECK(counter_wait(&b_in.messages, 1));
    CHECK(strcmp(b_in.last, "hello over tls") == 0);
    OK(ringrelay_client_send(b, ID("tls-files"), ID("and back")));
    OK(ringrelay_client_flush(b, WAIT_MS));
    CHECK(counter_wait(&a_in.messages, 1));
    CHECK(strcmp(a_in.last, "and back") == 0);
    OK(ringrelay_client_free(a));
    OK(ringrelay_client_free(b));

    /* Trusting another CA: the relay's certificate is refused, in words. */
    ringrelay_client_options foreign;
    ringrelay_client_options_init(&foreign, sizeof foreign);
    OK(ringrelay_client_options_set_tls_ca_file(&foreign, other_ca));
    CHECK(ringrelay_client_connect(servers, ID("tls-foreign"), NULL, 0, &foreign, &never) ==
          RINGRELAY_STATUS_TLS);
    CHECK(never == NULL && last_error_has("TLS handshake") && last_error_has("certificate"));

    counter_destroy(&a_in.messages);
    counter_destroy(&b_in.messages);
    printf("PASS client_tls\n");
    return 0;
}
