// embed: a C++17 server embedding a ringrelay node, with the C API wrapped in RAII handles.
// Two local clients of the node (no TCP) exchange a message; the program checks it arrived.
// Prints "PASS embed" and exits 0 on success.
//
// Build: c++ -std=c++17 embed.cpp $(pkg-config --cflags --libs --static ringrelay)
#include <condition_variable>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "ringrelay.h"

namespace {

// Throws with the library's words when a call fails.
void check(ringrelay_status status, const char *what) {
    if (status == RINGRELAY_STATUS_OK) return;
    char err[512];
    ringrelay_last_error(err, sizeof err);
    throw std::runtime_error(std::string(what) + ": " + ringrelay_status_str(status) + " (" +
                             err + ")");
}

struct ConfigFree {
    void operator()(ringrelay_node_config *c) const { ringrelay_node_config_free(c); }
};
struct NodeFree {
    void operator()(ringrelay_node *n) const { ringrelay_node_free(n); }
};
struct ClientFree {
    void operator()(ringrelay_client *c) const { ringrelay_client_free(c); }
};
using Config = std::unique_ptr<ringrelay_node_config, ConfigFree>;
using Node = std::unique_ptr<ringrelay_node, NodeFree>;
using Client = std::unique_ptr<ringrelay_client, ClientFree>;

// Messages one client received, waited on with a condition variable.
struct Inbox {
    std::mutex lock;
    std::condition_variable changed;
    std::string last;
    int count = 0;

    static void on_event(void *self, ringrelay_client *, const ringrelay_event *ev) {
        auto *inbox = static_cast<Inbox *>(self);
        if (ringrelay_event_get_kind(ev) != RINGRELAY_EVENT_KIND_MESSAGE) return;
        size_t len = 0;
        const uint8_t *payload = ringrelay_event_get_payload(ev, &len);
        std::lock_guard<std::mutex> guard(inbox->lock);
        inbox->last.assign(reinterpret_cast<const char *>(payload), len);
        inbox->count++;
        inbox->changed.notify_all();
    }

    bool wait_for(int n) {
        std::unique_lock<std::mutex> guard(lock);
        return changed.wait_for(guard, std::chrono::seconds(10), [&] { return count >= n; });
    }
};

Client local_client(ringrelay_node *node, const std::string &id, Inbox *inbox) {
    ringrelay_client_options opts;
    ringrelay_client_options_init(&opts, sizeof opts);
    opts.on_event = &Inbox::on_event;
    opts.userdata = inbox;
    ringrelay_client *raw = nullptr;
    check(ringrelay_node_local_client(node, reinterpret_cast<const uint8_t *>(id.data()),
                                      id.size(), nullptr, 0, &opts, &raw),
          "local client");
    return Client(raw);
}

}  // namespace

int main() {
    try {
        ringrelay_node_config *raw_config = nullptr;
        check(ringrelay_node_config_new(&raw_config), "config");
        Config config(raw_config);
        check(ringrelay_node_config_set(config.get(), "listen", "127.0.0.1:0"), "listen");
        check(ringrelay_node_config_set(config.get(), "workers", "1"), "workers");
        ringrelay_node *raw_node = nullptr;
        check(ringrelay_node_start(config.get(), &raw_node), "start");
        Node node(raw_node);

        Inbox scheduler_inbox, worker_inbox;
        // Declared after the node: destroyed first, so clients close before the node stops.
        Client scheduler = local_client(node.get(), "scheduler", &scheduler_inbox);
        Client worker = local_client(node.get(), "worker-1", &worker_inbox);
        const std::string job = "job 42";
        check(ringrelay_client_send(scheduler.get(), reinterpret_cast<const uint8_t *>("worker-1"),
                                    8, reinterpret_cast<const uint8_t *>(job.data()), job.size()),
              "send");
        if (!worker_inbox.wait_for(1) || worker_inbox.last != job) {
            std::fprintf(stderr, "FAIL embed: the job did not arrive\n");
            return 1;
        }
        std::printf("PASS embed\n");
        return 0;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "FAIL embed: %s\n", e.what());
        return 1;
    }
}
