// The DP x TP process mesh under mpirun. World rank r has tp_rank = r % tp and dp_rank = r / tp: TP
// groups are consecutive ranks (one node), DP groups stride by tp. Rank r drives GPU local_rank.
// NCCL communicators on GPUs, MPI ones on CPUs; host-side agreement (stop flags, checkpoint files)
// goes over MPI either way.
#pragma once
#include <mpi.h>

#include <memory>

#include "yocotron/comm.h"

namespace yt {

struct Mesh {
  int world_rank = 0, world_size = 1;
  int tp = 1, dp = 1, tp_rank = 0, dp_rank = 0;
  int local_rank = 0;
  std::unique_ptr<Communicator> tp_group, dp_group;  // null when that group has one rank
  MPI_Comm tp_mpi = MPI_COMM_SELF, dp_mpi = MPI_COMM_SELF;

  bool any_rank(bool local) const;  // logical OR over the world (host side)
  void barrier() const;
  // Gathers a string from every rank to rank 0 (host side); other ranks get an empty vector.
  std::vector<std::string> gather_strings(const std::string& mine) const;
  std::string broadcast_string(const std::string& from_rank0) const;
};

// Splits the world into the mesh; `gpu` selects NCCL (on cuda_device) or MPI communicators. Throws
// when parallel.tp does not divide the world size.
std::unique_ptr<Mesh> make_mesh(int64_t tp, bool gpu, int cuda_device);

}  // namespace yt
