// Gradient all-reduce overlapped with backward, the way PyTorch DDP's
// reducer does it (torch/csrc/distributed/c10d/reducer.cpp), in our own
// small form: parameters are grouped into buckets in reverse order (the
// order backward produces their gradients); a hook after each gradient's
// accumulation copies it into its bucket, and a bucket whose gradients are
// all in is all-reduced at once, asynchronously, while backward goes on.
// Buckets start strictly in order, so every rank issues the same sequence
// of collectives. `finish` (before the optimizer step) starts what backward
// did not reach (unused parameters, or a skipped backward: zeros), waits,
// and writes the means back into the gradients.
#include <algorithm>

#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "sc_pg.h"

namespace {

struct Bucket {
  std::vector<size_t> members;  // parameter indices
  std::vector<int64_t> offsets;  // of each member in `flat`
  at::Tensor flat;
  size_t pending = 0;  // members whose gradient has not arrived this step
  c10::intrusive_ptr<c10d::Work> work;
};

}  // namespace

struct sc_reducer {
  sc_pg* pg;
  std::vector<at::Tensor> params;
  std::vector<size_t> bucket_of;
  std::vector<bool> arrived;
  std::vector<Bucket> buckets;
  size_t next = 0;  // the first bucket not started this step
  std::mutex mutex;

  void reset_step() {
    next = 0;
    std::fill(arrived.begin(), arrived.end(), false);
    for (auto& b : buckets) {
      b.pending = b.members.size();
      b.work.reset();
    }
  }

  // Copies parameter i's gradient (zeros if it has none) into its bucket.
  void stage(size_t i) {
    auto& b = buckets[bucket_of[i]];
    size_t k = std::find(b.members.begin(), b.members.end(), i) - b.members.begin();
    auto slot = b.flat.narrow(0, b.offsets[k], params[i].numel());
    const auto& grad = params[i].grad();
    if (grad.defined()) {
      slot.view(params[i].sizes()).copy_(grad);
    } else {
      slot.zero_();
    }
  }

  // Starts every complete bucket from `next` on, in order.
  void start_ready() {
    while (next < buckets.size() && buckets[next].pending == 0) {
      auto& b = buckets[next++];
      if (pg->broken()) {
        continue;
      }
      std::vector<at::Tensor> tensors{b.flat};
      b.work = pg->group->allreduce(tensors);
    }
  }

  void on_gradient(size_t i) {
    std::lock_guard<std::mutex> lock(mutex);
    if (arrived[i]) {
      return;
    }
    arrived[i] = true;
    stage(i);
    buckets[bucket_of[i]].pending--;
    start_ready();
  }
};

namespace {

struct GradReady : public torch::autograd::PostAccumulateGradHook {
  GradReady(sc_reducer* r, size_t i) : reducer(r), index(i) {}
  void operator()(const torch::autograd::Variable& /*param*/) override {
    // A hook runs inside autograd's engine: a failure is kept, not thrown.
    try {
      reducer->on_gradient(index);
    } catch (const c10::Error& e) {
      reducer->pg->defer(e.what_without_backtrace());
    } catch (const std::exception& e) {
      reducer->pg->defer(e.what());
    }
  }
  sc_reducer* reducer;
  size_t index;
};

// Buckets of at most `cap` bytes over the parameters in reverse order;
// the first is `first_cap` (as DDP's 1 MiB first bucket: communication
// starts after the first few gradients, not after a quarter of the model).
void make_buckets(sc_reducer& r, int64_t first_cap, int64_t cap) {
  int64_t bytes = 0;
  for (size_t n = r.params.size(); n-- > 0;) {
    const auto& p = r.params[n];
    int64_t size = p.numel() * static_cast<int64_t>(p.element_size());
    int64_t limit = r.buckets.size() <= 1 ? first_cap : cap;
    bool same_kind = !r.buckets.empty() &&
        r.params[r.buckets.back().members[0]].scalar_type() == p.scalar_type();
    if (r.buckets.empty() || !same_kind || (bytes > 0 && bytes + size > limit)) {
      r.buckets.emplace_back();
      bytes = 0;
    }
    auto& b = r.buckets.back();
    b.offsets.push_back(bytes / static_cast<int64_t>(p.element_size()));
    b.members.push_back(n);
    r.bucket_of[n] = r.buckets.size() - 1;
    bytes += size;
  }
  for (auto& b : r.buckets) {
    const auto& last = r.params[b.members.back()];
    b.flat = at::zeros({b.offsets.back() + last.numel()}, last.options().requires_grad(false));
  }
}

}  // namespace

extern "C" {

// Hooks every parameter of `params` (leaf tensors that require grad).
sc_reducer* sc_reducer_new(sc_pg* pg, at::Tensor** params, size_t n, int64_t first_cap,
                           int64_t cap, char** err) {
  sc_reducer* r = nullptr;
  sc_guarded(err, [&] {
    auto owned = std::make_unique<sc_reducer>();
    owned->pg = pg;
    for (size_t i = 0; i < n; i++) {
      owned->params.push_back(*params[i]);
    }
    owned->bucket_of.resize(n);
    owned->arrived.resize(n);
    make_buckets(*owned, first_cap, cap);
    owned->reset_step();
    for (size_t i = 0; i < n; i++) {
      torch::autograd::impl::set_post_acc_grad_hooks(
          owned->params[i], std::make_unique<GradReady>(owned.get(), i));
    }
    r = owned.release();
  });
  return r;
}

// Buckets started so far this step (by the hooks, before finish).
size_t sc_reducer_started(sc_reducer* r) {
  std::lock_guard<std::mutex> lock(r->mutex);
  return r->next;
}

// Unhooks the parameters (they may outlive the reducer).
void sc_reducer_free(sc_reducer* r) {
  for (auto& p : r->params) {
    torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);
  }
  delete r;
}

// Completes the step's all-reduce (see the top of the file) and replaces
// every gradient with its mean over ranks.
// `params`: the step's parameters, which must be the hooked ones.
int sc_reducer_finish(sc_reducer* r, at::Tensor** params, size_t n, char** err) {
  return sc_guarded(err, [&] {
    std::lock_guard<std::mutex> lock(r->mutex);
    TORCH_CHECK(n == r->params.size(), "the reducer was built for ", r->params.size(),
                " parameters, the step has ", n);
    for (size_t i = 0; i < n; i++) {
      // Replacing a parameter (rather than copying into it) would leave
      // its gradient unhooked: a bug of the caller, caught here.
      TORCH_CHECK(params[i]->unsafeGetTensorImpl() == r->params[i].unsafeGetTensorImpl(),
                  "parameter ", i, " is not the tensor the reducer hooked");
    }
    for (size_t i = 0; i < r->params.size(); i++) {
      if (!r->arrived[i]) {
        r->arrived[i] = true;
        r->stage(i);
        r->buckets[r->bucket_of[i]].pending--;
      }
    }
    r->start_ready();
    double scale = 1.0 / r->pg->group->getSize();
    for (auto& b : r->buckets) {
      try {
        if (b.work) {
          b.work->wait(r->pg->timeout);
        }
      } catch (const c10::Error& e) {
        r->pg->defer(e.what_without_backtrace());
      } catch (const std::exception& e) {
        r->pg->defer(e.what());
      }
    }
    bool broken = r->pg->broken();
    r->reset_step();
    if (broken) {
      return;  // the caller collects the kept error
    }
    for (auto& b : r->buckets) {
      for (size_t k = 0; k < b.members.size(); k++) {
        auto& p = r->params[b.members[k]];
        // No gradient here (a skipped backward, an unused parameter): it
        // went as zeros and stays undefined, which the optimizer skips.
        if (!p.grad().defined()) {
          continue;
        }
        auto mean = b.flat.narrow(0, b.offsets[k], p.numel()).view(p.sizes());
        at::mul_out(p.mutable_grad(), mean, at::scalar_tensor(scale, mean.options()));
      }
    }
  });
}

}  // extern "C"
