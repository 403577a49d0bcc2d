// A C ABI over libtorch's c10d: a TCPStore rendezvous, a Gloo process group,
// and the three collectives the trainer needs, on tch tensors (a tch
// `Tensor` points at an `at::Tensor`, see torch-sys's torch_api.h).
//
// Every entry point catches every C++ exception and returns its message
// through `err` (malloc'd, freed by sc_free_string): an exception must never
// unwind into Rust.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "sc_pg.h"

namespace {

bool is_loopback(const std::string& master) {
  return master == "localhost" || master.rfind("127.", 0) == 0 || master == "::1";
}

// A socket listening on the loopback address `master` names, for the
// store to take over (TCPStoreOptions::masterListenFd): left to itself the
// store listens on every interface, which would open an unauthenticated
// key-value store (and the Gloo rendezvous) to the network for a run whose
// ranks are all on this machine.
int listen_on_loopback(const std::string& master, uint16_t port) {
  bool v6 = master == "::1";
  std::string host = master == "localhost" ? "127.0.0.1" : master;
  int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  }
  // As c10d's own listener: a port in TIME_WAIT from a previous run is free.
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_storage addr{};
  socklen_t len = 0;
  int parsed = 0;
  if (v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    parsed = ::inet_pton(AF_INET6, host.c_str(), &a->sin6_addr);
    len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&addr);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    parsed = ::inet_pton(AF_INET, host.c_str(), &a->sin_addr);
    len = sizeof(*a);
  }
  std::string where = host + ":" + std::to_string(port);
  if (parsed != 1) {
    ::close(fd);
    throw std::runtime_error(where + ": not a loopback address");
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
      ::listen(fd, SOMAXCONN) != 0) {
    int e = errno;
    ::close(fd);
    throw std::runtime_error("cannot listen on " + where + ": " + std::strerror(e));
  }
  return fd;
}

// Whether `fd` is still the socket listen_on_loopback made for `port`: open,
// listening, bound to that port. The store adopts the fd (libuv's
// uv_tcp_open) partway through its constructor and closes it itself from
// then on, even when a later step throws; the number may by then name
// another file. Only one socket listens on a port, so this is ours.
bool still_our_listener(int fd, uint16_t port) {
  int listening = 0;
  socklen_t size = sizeof(listening);
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) != 0 || !listening) {
    return false;
  }
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return false;
  }
  if (addr.ss_family == AF_INET) {
    return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port) == port;
  }
  if (addr.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port) == port;
  }
  return false;
}

// The address this rank's Gloo transport binds to. GLOO_SOCKET_IFNAME wins
// (as in PyTorch); a loopback master means every rank is on this machine,
// where the machine's hostname may not resolve (containers): bind loopback.
std::shared_ptr<gloo::transport::Device> make_device(const std::string& master) {
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME")) {
    if (*ifname != '\0') {
      return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
    }
  }
  if (is_loopback(master)) {
    return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  }
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

}  // namespace

extern "C" {

void sc_free_string(char* s) { std::free(s); }

int sc_pg_take_deferred_error(sc_pg* pg, char** err) {
  std::lock_guard<std::mutex> lock(pg->deferred_mutex);
  if (pg->deferred_error.empty()) {
    return 0;
  }
  *err = sc_copy_string(pg->deferred_error);
  pg->deferred_error.clear();
  return 1;
}

// `store_server`: this process hosts the TCPStore (rank 0, unless a launcher
// such as torchrun's agent already hosts it).
sc_pg* sc_pg_new(const char* master, uint16_t port, int rank, int world,
                 int64_t timeout_ms, bool store_server, char** err) {
  sc_pg* pg = nullptr;
  sc_guarded(err, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = store_server;
    opts.numWorkers = static_cast<std::size_t>(world);
    opts.waitWorkers = false;
    opts.timeout = timeout;
    int listen_fd = -1;
    if (store_server && is_loopback(master)) {
      listen_fd = listen_on_loopback(master, port);
      opts.masterListenFd = listen_fd;
    }
    c10::intrusive_ptr<c10d::TCPStore> store;
    try {
      store = c10::make_intrusive<c10d::TCPStore>(std::string(master), opts);
    } catch (...) {
      // Not adopted before the failure: nobody else will close it.
      if (listen_fd >= 0 && still_our_listener(listen_fd, port)) {
        ::close(listen_fd);
      }
      throw;
    }
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices.push_back(make_device(master));
    auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(
        c10::static_intrusive_pointer_cast<c10d::Store>(store), rank, world, options);
    pg = new sc_pg(store, group, timeout);
  });
  return pg;
}

void sc_pg_free(sc_pg* pg) { delete pg; }

int sc_pg_all_reduce_sum(sc_pg* pg, at::Tensor* tensor, char** err) {
  return sc_guarded(err, [&] {
    std::vector<at::Tensor> tensors{*tensor};
    pg->group->allreduce(tensors)->wait(pg->timeout);
  });
}

int sc_pg_broadcast(sc_pg* pg, at::Tensor* tensor, int root, char** err) {
  return sc_guarded(err, [&] {
    std::vector<at::Tensor> tensors{*tensor};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    pg->group->broadcast(tensors, opts)->wait(pg->timeout);
  });
}

int sc_pg_barrier(sc_pg* pg, char** err) {
  return sc_guarded(err, [&] { pg->group->barrier()->wait(pg->timeout); });
}

// Adds `delta` to the store's counter `key` (0 reads it without waiting):
// the ranks' heartbeats. Returns -1 (and *err) when the store is unreachable.
int64_t sc_pg_store_add(sc_pg* pg, const char* key, int64_t delta, char** err) {
  int64_t value = -1;
  sc_guarded(err, [&] { value = pg->store->add(key, delta); });
  return value;
}

}  // extern "C"
