// What every file of the shim shares: the process-group handle and the
// exception guard of the C ABI.
#pragma once

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

struct sc_pg {
  sc_pg(c10::intrusive_ptr<c10d::Store> s, c10::intrusive_ptr<c10d::ProcessGroupGloo> g,
        std::chrono::milliseconds t)
      : store(std::move(s)), group(std::move(g)), timeout(t) {}

  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
  std::chrono::milliseconds timeout;

  // The first collective that failed where no error can be returned (inside
  // a forward or backward pass, whose code returns tensors); the caller
  // collects it with sc_pg_take_deferred_error after the pass. While one is
  // kept, collectives of passes are skipped: after a timeout, each further
  // one would wait the whole timeout again.
  std::mutex deferred_mutex;
  std::string deferred_error;

  void defer(const std::string& message) {
    std::lock_guard<std::mutex> lock(deferred_mutex);
    if (deferred_error.empty()) {
      deferred_error = message;
    }
  }

  bool broken() {
    std::lock_guard<std::mutex> lock(deferred_mutex);
    return !deferred_error.empty();
  }
};

inline char* sc_copy_string(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, s.c_str(), s.size() + 1);
  }
  return out;
}

// Runs `body`, returning 0, or 1 with its exception's message in *err.
// c10::Error's what() carries a C++ backtrace the user cannot act on.
template <typename F>
int sc_guarded(char** err, F&& body) {
  try {
    body();
    return 0;
  } catch (const c10::Error& e) {
    *err = sc_copy_string(e.what_without_backtrace());
  } catch (const std::exception& e) {
    *err = sc_copy_string(e.what());
  } catch (...) {
    *err = sc_copy_string("unknown C++ exception");
  }
  return 1;
}
