// One communicator interface, two back ends: NCCL for CUDA tensors, MPI for CPU tensors. The same
// data- and tensor-parallel code and the same tests run on a laptop under `mpirun -np 4` and on GPU
// nodes. Every collective is registered with the watchdog, so a peer that dies or stalls ends every
// rank with a message instead of a hang.
#pragma once
#include <ATen/ATen.h>
#include <mpi.h>

#include <memory>
#include <string>

namespace yt {

enum class ReduceOp { Sum, Max };

// An asynchronous collective. wait() orders later work after it: on a GPU the current stream waits
// for it (the host does not block); on the CPU the call blocks until it is done.
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const std::string& name() const = 0;  // "world", "dp", "tp": for messages

  // All tensors contiguous, on the back end's device, the same dtype and size on every rank.
  virtual void all_reduce(const at::Tensor& t, ReduceOp op = ReduceOp::Sum) = 0;  // in place
  // out holds size() * in.numel() elements, rank-major. `in` may be out's own slice for this rank.
  virtual void all_gather(const at::Tensor& in, const at::Tensor& out) = 0;
  // in holds size() * out.numel() elements; out = the sum of every rank's slice for this rank.
  virtual void reduce_scatter(const at::Tensor& in, const at::Tensor& out) = 0;
  virtual void broadcast(const at::Tensor& t, int root) = 0;
  virtual std::unique_ptr<Work> all_reduce_async(const at::Tensor& t) = 0;
  virtual std::unique_ptr<Work> reduce_scatter_async(const at::Tensor& in, const at::Tensor& out) = 0;
};

// MPI back end over the ranks of `comm`.
std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm, std::string name);
// NCCL back end over the same ranks; the unique id travels over MPI. Throws when NCCL is not built in.
std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm comm, std::string name, int cuda_device);

}  // namespace yt
