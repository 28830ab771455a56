// The MPI back end: CPU tensors, MPI collectives on a communicator of the mesh (bf16 included).
#include <mpi.h>

#include <stdexcept>

#include "yocotron/comm.h"
#include "yocotron/str.h"
#include "yocotron/watchdog.h"

namespace yt {
namespace {

// bf16 has no MPI type: two bytes, reduced by user operations that add (or compare) in fp32 and
// round to nearest even, as a bf16 addition does.
template <class F>
void bf16_apply(void* in, void* inout, int* len, MPI_Datatype*) {
  auto* a = static_cast<const c10::BFloat16*>(in);
  auto* b = static_cast<c10::BFloat16*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = c10::BFloat16(F{}(static_cast<float>(a[i]), static_cast<float>(b[i])));
}
struct Add {
  float operator()(float a, float b) const { return a + b; }
};
struct Max {
  float operator()(float a, float b) const { return a > b ? a : b; }
};

struct Bf16Mpi {
  MPI_Datatype type;
  MPI_Op sum, max;
  Bf16Mpi() {
    MPI_Type_contiguous(2, MPI_BYTE, &type);
    MPI_Type_commit(&type);
    MPI_Op_create(&bf16_apply<Add>, /*commute=*/1, &sum);
    MPI_Op_create(&bf16_apply<Max>, /*commute=*/1, &max);
  }
};
const Bf16Mpi& bf16_mpi() {
  static const Bf16Mpi b;  // after MPI_Init: the first bf16 collective creates it
  return b;
}

MPI_Op mpi_op(const at::Tensor& t, ReduceOp op) {
  if (t.scalar_type() == at::kBFloat16) return op == ReduceOp::Sum ? bf16_mpi().sum : bf16_mpi().max;
  return op == ReduceOp::Sum ? MPI_SUM : MPI_MAX;
}

MPI_Datatype mpi_type(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kBFloat16: return bf16_mpi().type;
    case at::kFloat: return MPI_FLOAT;
    case at::kDouble: return MPI_DOUBLE;
    case at::kLong: return MPI_INT64_T;
    case at::kInt: return MPI_INT32_T;
    case at::kByte: return MPI_UINT8_T;
    default: throw std::runtime_error(cat("MPI communicator: unsupported dtype ", c10::toString(t.scalar_type())));
  }
}

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw std::runtime_error(cat("MPI ", what, " failed: ", std::string(msg, static_cast<size_t>(len))));
  }
}

void require_cpu(const at::Tensor& t) {
  if (!t.device().is_cpu() || !t.is_contiguous())
    throw std::runtime_error("MPI communicator: tensors must be contiguous CPU tensors");
}

class MpiWork : public Work {
 public:
  MpiWork(MPI_Request req, uint64_t token) : req_(req), token_(token) {}
  void wait() override {
    MPI_Wait(&req_, MPI_STATUS_IGNORE);
    Watchdog::get().end(token_);
  }

 private:
  MPI_Request req_;
  uint64_t token_;
};

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, std::string name) : comm_(comm), name_(std::move(name)) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);  // errors become exceptions, not silent aborts
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }

  void all_reduce(const at::Tensor& t, ReduceOp op) override {
    require_cpu(t);
    Guard g(this, "all_reduce", t);
    check(MPI_Allreduce(MPI_IN_PLACE, t.data_ptr(), static_cast<int>(t.numel()), mpi_type(t), mpi_op(t, op), comm_),
          "all_reduce");
  }

  void all_gather(const at::Tensor& in, const at::Tensor& out) override {
    require_cpu(in);
    require_cpu(out);
    Guard g(this, "all_gather", out);
    const int n = static_cast<int>(in.numel());
    const bool in_place = in.data_ptr() == static_cast<char*>(out.data_ptr()) + static_cast<size_t>(rank_) * n * in.element_size();
    check(MPI_Allgather(in_place ? MPI_IN_PLACE : in.data_ptr(), n, mpi_type(in), out.data_ptr(), n, mpi_type(out), comm_),
          "all_gather");
  }

  void reduce_scatter(const at::Tensor& in, const at::Tensor& out) override {
    require_cpu(in);
    require_cpu(out);
    Guard g(this, "reduce_scatter", in);
    at::Tensor dst = overlaps(in, out) ? at::empty_like(out) : out;
    check(MPI_Reduce_scatter_block(in.data_ptr(), dst.data_ptr(), static_cast<int>(out.numel()), mpi_type(in),
                                  mpi_op(in, ReduceOp::Sum), comm_),
          "reduce_scatter");
    if (!dst.is_same(out)) out.copy_(dst);
  }

  void broadcast(const at::Tensor& t, int root) override {
    require_cpu(t);
    Guard g(this, "broadcast", t);
    check(MPI_Bcast(t.data_ptr(), static_cast<int>(t.numel()), mpi_type(t), root, comm_), "broadcast");
  }

  std::unique_ptr<Work> all_reduce_async(const at::Tensor& t) override {
    require_cpu(t);
    MPI_Request req;
    uint64_t token = Watchdog::get().begin(describe("all_reduce", t));
    check(MPI_Iallreduce(MPI_IN_PLACE, t.data_ptr(), static_cast<int>(t.numel()), mpi_type(t), mpi_op(t, ReduceOp::Sum),
                         comm_, &req),
          "all_reduce");
    return std::make_unique<MpiWork>(req, token);
  }

  std::unique_ptr<Work> reduce_scatter_async(const at::Tensor& in, const at::Tensor& out) override {
    // MPI_Ireduce_scatter_block cannot write into its own input: done in place, synchronously.
    reduce_scatter(in, out);
    struct Done : Work {
      void wait() override {}
    };
    return std::make_unique<Done>();
  }

 private:
  static bool overlaps(const at::Tensor& a, const at::Tensor& b) {
    auto a0 = static_cast<const char*>(a.data_ptr()), b0 = static_cast<const char*>(b.data_ptr());
    return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
  }
  std::string describe(const char* op, const at::Tensor& t) const {
    return cat(op, " on the ", name_, " group (", size_, " ranks, ", t.nbytes(), " bytes)");
  }
  struct Guard {
    uint64_t token;
    Guard(const MpiCommunicator* c, const char* op, const at::Tensor& t) : token(Watchdog::get().begin(c->describe(op, t))) {}
    ~Guard() { Watchdog::get().end(token); }
  };

  MPI_Comm comm_;
  std::string name_;
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm, std::string name) {
  return std::make_unique<MpiCommunicator>(comm, std::move(name));
}

}  // namespace yt
