// A sum over ranks that autograd differentiates, for SyncBatchNorm: every
// rank normalises with statistics summed over all ranks, so every rank's
// loss depends on every rank's inputs, and the gradient reaching the summed
// statistics must itself be summed over ranks before it flows back into this
// rank's activations (torch.distributed.nn.functional.all_reduce's rule).
#include <torch/csrc/autograd/custom_function.h>

#include "sc_pg.h"

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// A contiguous copy of `t`, summed over ranks. Passes run on tensors only, so
// a failure is kept in the handle (sc_pg::defer) and this rank's own values
// come back: the caller stops at its next check, before they are used.
at::Tensor summed_copy(sc_pg* pg, const at::Tensor& t) {
  auto out = t.detach().clone(at::MemoryFormat::Contiguous);
  if (pg->broken()) {
    return out;
  }
  try {
    std::vector<at::Tensor> tensors{out};
    pg->group->allreduce(tensors)->wait(pg->timeout);
  } catch (const c10::Error& e) {
    pg->defer(e.what_without_backtrace());
  } catch (const std::exception& e) {
    pg->defer(e.what());
  }
  return out;
}

struct SumOverRanks : public torch::autograd::Function<SumOverRanks> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& t, int64_t pg) {
    ctx->saved_data["pg"] = pg;
    return summed_copy(reinterpret_cast<sc_pg*>(pg), t);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto* pg = reinterpret_cast<sc_pg*>(ctx->saved_data["pg"].toInt());
    // One gradient per input of forward; the handle has none.
    return {summed_copy(pg, grads[0]), at::Tensor()};
  }
};

}  // namespace

extern "C" {

// A new tensor: `t` summed over ranks, with the gradient rule above.
at::Tensor* sc_pg_sum_over_ranks(sc_pg* pg, at::Tensor* t, char** err) {
  at::Tensor* out = nullptr;
  sc_guarded(err, [&] {
    out = new at::Tensor(SumOverRanks::apply(*t, reinterpret_cast<int64_t>(pg)));
  });
  return out;
}

}  // extern "C"
