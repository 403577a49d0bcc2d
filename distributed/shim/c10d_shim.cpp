// A C ABI over libtorch's c10d: a TCPStore rendezvous, a Gloo process group,
// and the three collectives the trainer needs, on tch tensors (a tch
// `Tensor` points at an `at::Tensor`, see torch-sys's torch_api.h).
//
// Every entry point catches every C++ exception and returns its message
// through `err` (malloc'd, freed by sc_free_string): an exception must never
// unwind into Rust.
#include <cstdlib>
#include <cstring>
#include <string>

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

struct sc_pg {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
  std::chrono::milliseconds timeout;
};

namespace {

char* copy_string(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, s.c_str(), s.size() + 1);
  }
  return out;
}

// c10::Error's what() carries a C++ backtrace the user cannot act on.
template <typename F>
int guarded(char** err, F&& body) {
  try {
    body();
    return 0;
  } catch (const c10::Error& e) {
    *err = copy_string(e.what_without_backtrace());
  } catch (const std::exception& e) {
    *err = copy_string(e.what());
  } catch (...) {
    *err = copy_string("unknown C++ exception");
  }
  return 1;
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
  if (master == "localhost" || master.rfind("127.", 0) == 0 || master == "::1") {
    return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  }
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

}  // namespace

extern "C" {

void sc_free_string(char* s) { std::free(s); }

// `store_server`: this process hosts the TCPStore (rank 0, unless a launcher
// such as torchrun's agent already hosts it).
sc_pg* sc_pg_new(const char* master, uint16_t port, int rank, int world,
                 int64_t timeout_ms, bool store_server, char** err) {
  sc_pg* pg = nullptr;
  guarded(err, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = store_server;
    opts.numWorkers = static_cast<std::size_t>(world);
    opts.waitWorkers = false;
    opts.timeout = timeout;
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(master), opts);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices.push_back(make_device(master));
    auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(
        c10::static_intrusive_pointer_cast<c10d::Store>(store), rank, world, options);
    pg = new sc_pg{store, group, timeout};
  });
  return pg;
}

void sc_pg_free(sc_pg* pg) { delete pg; }

int sc_pg_all_reduce_sum(sc_pg* pg, at::Tensor* tensor, char** err) {
  return guarded(err, [&] {
    std::vector<at::Tensor> tensors{*tensor};
    pg->group->allreduce(tensors)->wait(pg->timeout);
  });
}

int sc_pg_broadcast(sc_pg* pg, at::Tensor* tensor, int root, char** err) {
  return guarded(err, [&] {
    std::vector<at::Tensor> tensors{*tensor};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    pg->group->broadcast(tensors, opts)->wait(pg->timeout);
  });
}

int sc_pg_barrier(sc_pg* pg, char** err) {
  return guarded(err, [&] { pg->group->barrier()->wait(pg->timeout); });
}

// Adds `delta` to the store's counter `key` (0 reads it without waiting):
// the ranks' heartbeats. Returns -1 (and *err) when the store is unreachable.
int64_t sc_pg_store_add(sc_pg* pg, const char* key, int64_t delta, char** err) {
  int64_t value = -1;
  guarded(err, [&] { value = pg->store->add(key, delta); });
  return value;
}

}  // extern "C"
