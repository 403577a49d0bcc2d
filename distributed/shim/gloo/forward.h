// Forward declarations of exactly the gloo names that torch's
// ProcessGroupGloo.hpp mentions: the torch wheel ships that header and the
// gloo symbols inside libtorch_cpu.so, but not gloo's own headers.
//
// Why not Debian's libgloo-dev: it is a 2022 snapshot, older than the gloo
// torch 2.13 was built with, and its rendezvous::Store would have to match
// the virtuals ProcessGroupGloo::GlooStore overrides; pinning a system
// package to a wheel is fragile and adds a setup step. This header is safe
// because the shim only uses gloo types behind pointers (shared_ptr,
// unique_ptr) and never constructs a GlooStore or touches a gloo::Context:
// no gloo class layout, vtable or inline gloo code is emitted from the shim,
// so nothing here has to match gloo's real definitions beyond compiling.
// The declarations below are what ProcessGroupGloo.hpp's inline member
// functions need to parse (Context::setTimeout, Store's virtuals that
// GlooStore overrides without GLOO_STORE_HAS_STORE_V2); none of them is
// called by the shim, so none is linked.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace gloo {

class Context {
 public:
  void setTimeout(std::chrono::milliseconds timeout);
};

namespace transport {
class Device;
class UnboundBuffer;
}  // namespace transport

namespace rendezvous {
class Store {
 public:
  virtual ~Store() = default;
  virtual void set(const std::string& key, const std::vector<char>& data) = 0;
  virtual std::vector<char> get(const std::string& key) = 0;
  virtual void wait(const std::vector<std::string>& keys) = 0;
  virtual void wait(
      const std::vector<std::string>& keys,
      const std::chrono::milliseconds& timeout) = 0;
};
}  // namespace rendezvous

}  // namespace gloo
