/* The log hook hears the threads an embedded node starts, not only its workers: a one-node
 * cluster's control thread logs "cluster node ready" through it (and start, on the host's
 * thread, "metrics endpoint listening"). Usage: node_log */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */

#include "check.h"

static pthread_t main_thread;
static counter cluster_ready;   /* "cluster node ready" lines */
static counter metrics_lines;   /* "metrics endpoint listening" lines */
static counter from_node_thread; /* lines logged on a thread other than main's */

static void on_log(void *userdata, uint32_t level, const char *message) {
    (void)userdata;
    CHECK(level >= 1 && level <= 3);
    CHECK(message != NULL);
    if (strstr(message, "cluster node ready") != NULL) {
        /* Counted first: main reads it once it sees `cluster_ready`. */
        if (!pthread_equal(pthread_self(), main_thread)) counter_add(&from_node_thread, 1);
        counter_add(&cluster_ready, 1);
    }
    if (strstr(message, "metrics endpoint listening") != NULL) counter_add(&metrics_lines, 1);
}

int main(void) {
    main_thread = pthread_self();
    counter_init(&cluster_ready);
    counter_init(&metrics_lines);
    counter_init(&from_node_thread);
    ringrelay_node_config *cfg = NULL;
    OK(ringrelay_node_config_new(&cfg));
    OK(ringrelay_node_config_set(cfg, "listen", "127.0.0.1:0"));
    OK(ringrelay_node_config_set(cfg, "workers", "1"));
    /* node_id before the cluster_listen and cluster_secret it needs: keys go in any order. */
    OK(ringrelay_node_config_set(cfg, "node_id", "1"));
    OK(ringrelay_node_config_set(cfg, "cluster_listen", "127.0.0.1:0"));
    OK(ringrelay_node_config_set(cfg, "cluster_secret", "a secret for this test only"));
    OK(ringrelay_node_config_set(cfg, "metrics", "127.0.0.1:0"));
    OK(ringrelay_node_config_set_log(cfg, on_log, NULL, NULL, 3));
    ringrelay_node *node = NULL;
    OK(ringrelay_node_start(cfg, &node));
    ringrelay_node_config_free(cfg);
    CHECK(counter_wait(&metrics_lines, 1));
    /* Logged by the cluster's control thread, which the node started. */
    CHECK(counter_wait(&cluster_ready, 1));
    CHECK(counter_get(&from_node_thread) >= 1);
    OK(ringrelay_node_stop(node, 100));
    OK(ringrelay_node_free(node));
    counter_destroy(&cluster_ready);
    counter_destroy(&metrics_lines);
    counter_destroy(&from_node_thread);
    puts("PASS node_log");
    return 0;
}
