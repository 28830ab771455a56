// The NCCL back end: CUDA tensors. Blocking collectives run on the current stream; asynchronous
// ones (the data-parallel gradient buckets) on a communication stream that waits for the current
// stream first, so they overlap the rest of backward; wait() makes the current stream wait for
// them. Neither blocks the host. Every collective's completion event is polled by the watchdog,
// which also polls ncclCommGetAsyncError and aborts the communicator before ending the process.
#include <stdexcept>

#include "yocotron/comm.h"
#include "yocotron/str.h"

#ifdef YOCOTRON_WITH_NCCL
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#include "yocotron/watchdog.h"

namespace yt {
namespace {

void check(ncclResult_t r, const std::string& what) {
  if (r != ncclSuccess && r != ncclInProgress)
    throw std::runtime_error(cat("NCCL ", what, " failed: ", ncclGetErrorString(r), " (", ncclGetLastError(nullptr), ")"));
}

ncclDataType_t nccl_type(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return ncclFloat32;
    case at::kBFloat16: return ncclBfloat16;
    case at::kHalf: return ncclFloat16;
    case at::kDouble: return ncclFloat64;
    case at::kLong: return ncclInt64;
    case at::kInt: return ncclInt32;
    case at::kByte: return ncclUint8;
    default: throw std::runtime_error(cat("NCCL communicator: unsupported dtype ", c10::toString(t.scalar_type())));
  }
}

// A CUDA event recorded after a collective; shared with the watchdog, which polls it.
std::shared_ptr<cudaEvent_t> record_event(cudaStream_t stream) {
  auto ev = std::shared_ptr<cudaEvent_t>(new cudaEvent_t, [](cudaEvent_t* e) {
    cudaEventDestroy(*e);
    delete e;
  });
  cudaEventCreateWithFlags(ev.get(), cudaEventDisableTiming);
  cudaEventRecord(*ev, stream);
  return ev;
}

class NcclWork : public Work {
 public:
  explicit NcclWork(std::shared_ptr<cudaEvent_t> done) : done_(std::move(done)) {}
  void wait() override { cudaStreamWaitEvent(at::cuda::getCurrentCUDAStream().stream(), *done_, 0); }

 private:
  std::shared_ptr<cudaEvent_t> done_;
};

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(MPI_Comm mpi, std::string name, int device) : name_(std::move(name)), device_(device) {
    MPI_Comm_rank(mpi, &rank_);
    MPI_Comm_size(mpi, &size_);
    ncclUniqueId id;
    if (rank_ == 0) check(ncclGetUniqueId(&id), "get unique id");
    MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, mpi);
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
    check(ncclCommInitRank(&comm_, size_, id, rank_), cat("init of the ", name_, " group"));
    comm_stream_ = std::make_unique<c10::cuda::CUDAStream>(c10::cuda::getStreamFromPool(/*isHighPriority=*/true, device_));
    ncclComm_t c = comm_;
    std::string n = name_;
    Watchdog::get().on_abort([c] { ncclCommAbort(c); });
    Watchdog::get().add_error_check([c, n]() -> std::string {
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(c, &async);
      if (async == ncclSuccess || async == ncclInProgress) return "";
      return cat("asynchronous NCCL error on the ", n, " group: ", ncclGetErrorString(async));
    });
  }
  ~NcclCommunicator() override = default;  // communicators live until the process ends

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }

  void all_reduce(const at::Tensor& t, ReduceOp op) override {
    cudaStream_t s = at::cuda::getCurrentCUDAStream().stream();
    check(ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t), op == ReduceOp::Sum ? ncclSum : ncclMax, comm_, s),
          describe("all_reduce", t));
    watch("all_reduce", t, s);
  }

  void all_gather(const at::Tensor& in, const at::Tensor& out) override {
    cudaStream_t s = at::cuda::getCurrentCUDAStream().stream();
    check(ncclAllGather(in.data_ptr(), out.data_ptr(), in.numel(), nccl_type(in), comm_, s), describe("all_gather", out));
    watch("all_gather", out, s);
  }

  void reduce_scatter(const at::Tensor& in, const at::Tensor& out) override {
    cudaStream_t s = at::cuda::getCurrentCUDAStream().stream();
    check(ncclReduceScatter(in.data_ptr(), out.data_ptr(), out.numel(), nccl_type(in), ncclSum, comm_, s),
          describe("reduce_scatter", in));
    watch("reduce_scatter", in, s);
  }

  void broadcast(const at::Tensor& t, int root) override {
    cudaStream_t s = at::cuda::getCurrentCUDAStream().stream();
    check(ncclBroadcast(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t), root, comm_, s), describe("broadcast", t));
    watch("broadcast", t, s);
  }

  std::unique_ptr<Work> all_reduce_async(const at::Tensor& t) override {
    cudaStream_t s = enter_comm_stream(t);
    check(ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t), ncclSum, comm_, s), describe("all_reduce", t));
    return std::make_unique<NcclWork>(watch("all_reduce", t, s));
  }

  std::unique_ptr<Work> reduce_scatter_async(const at::Tensor& in, const at::Tensor& out) override {
    cudaStream_t s = enter_comm_stream(in);
    check(ncclReduceScatter(in.data_ptr(), out.data_ptr(), out.numel(), nccl_type(in), ncclSum, comm_, s),
          describe("reduce_scatter", in));
    return std::make_unique<NcclWork>(watch("reduce_scatter", in, s));
  }

 private:
  std::string describe(const char* op, const at::Tensor& t) const {
    return cat(op, " on the ", name_, " group (", size_, " ranks, ", t.nbytes(), " bytes)");
  }
  // The communication stream starts after everything queued so far on the current stream.
  cudaStream_t enter_comm_stream(const at::Tensor& t) {
    cudaStream_t cur = at::cuda::getCurrentCUDAStream().stream();
    auto ready = record_event(cur);
    cudaStreamWaitEvent(comm_stream_->stream(), *ready, 0);
    // The buffer is used on another stream: keep the caching allocator from reusing it too early.
    c10::cuda::CUDACachingAllocator::recordStream(t.storage().data_ptr(), *comm_stream_);
    return comm_stream_->stream();
  }
  std::shared_ptr<cudaEvent_t> watch(const char* op, const at::Tensor& t, cudaStream_t s) {
    auto done = record_event(s);
    auto d = done;
    Watchdog::get().begin(describe(op, t), [d] { return cudaEventQuery(*d) == cudaSuccess; });
    return done;
  }

  std::string name_;
  int device_;
  int rank_ = 0, size_ = 1;
  ncclComm_t comm_ = nullptr;
  std::unique_ptr<c10::cuda::CUDAStream> comm_stream_;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm comm, std::string name, int cuda_device) {
  return std::make_unique<NcclCommunicator>(comm, std::move(name), cuda_device);
}

}  // namespace yt

#else

namespace yt {
std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm, std::string, int) {
  throw std::runtime_error("this yocotron was built without NCCL (LibTorch without CUDA): GPU runs across ranks need it");
}
}  // namespace yt

#endif
