/* Start and stop an embedded node many times with clients attached (local and TCP), under
 * AddressSanitizer with leak checking: no memory leaks (LeakSanitizer at exit), no descriptor
 * or thread is left behind (counted in /proc/self before and after), nothing crashes, every
 * start works. Usage: node_cycles CYCLES */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */

#include <dirent.h>

#include "check.h"

/* Entries of a /proc/self directory (open descriptors, threads). */
static long entries(const char *dir) {
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    long n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] != '.') n++;
    }
    closedir(d);
    return n;
}

int main(int argc, char **argv) {
    CHECK(argc == 2);
    long cycles = strtol(argv[1], NULL, 10);
    CHECK(cycles > 0);
    ringrelay_node_config *cfg = NULL;
    OK(ringrelay_node_config_new(&cfg));
    OK(ringrelay_node_config_set(cfg, "listen", "127.0.0.1:0"));
    OK(ringrelay_node_config_set(cfg, "workers", "1"));
    OK(ringrelay_node_config_set(cfg, "close_linger_ms", "20"));
    /* Small buffers: each cycle maps a fresh ring and its buffers. */
    OK(ringrelay_node_config_set(cfg, "recv_buffer_count", "64"));
    long fds_before = entries("/proc/self/fd"), threads_before = entries("/proc/self/task");
    for (long i = 0; i < cycles; i++) {
        ringrelay_node *node = NULL;
        OK(ringrelay_node_start(cfg, &node));
        ringrelay_client *local = NULL, *remote = NULL;
        OK(ringrelay_node_local_client(node, ID("local"), NULL, 0, NULL, &local));
        OK(ringrelay_client_connect(ringrelay_node_listen_addr(node), ID("remote"), NULL, 0,
                                    NULL, &remote));
        OK(ringrelay_client_send(remote, ID("local"), ID("ping")));
        OK(ringrelay_client_flush(remote, WAIT_MS));
        /* Half the cycles free the node while its clients are still attached. */
        if (i % 2 == 0) {
            OK(ringrelay_node_stop(node, 0));
            OK(ringrelay_client_free(local));
            OK(ringrelay_client_free(remote));
            OK(ringrelay_node_free(node));
        } else {
            OK(ringrelay_client_free(local));
            OK(ringrelay_node_free(node));
            OK(ringrelay_client_free(remote));
        }
    }
    ringrelay_node_config_free(cfg);
    CHECK(entries("/proc/self/fd") == fds_before);
    CHECK(entries("/proc/self/task") == threads_before);
    printf("PASS node_cycles\n");
    return 0;
}
