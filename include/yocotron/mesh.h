// The process mesh under mpirun: named dimensions, outermost first dp, pp, cp, tp (tp innermost, so
// a TP group is consecutive ranks, one node). World rank r = ((dp_i * pp + pp_i) * cp + cp_i) * tp + tp_i.
// Each dimension has a group (the ranks that differ only in that coordinate): NCCL communicators on
// GPUs, MPI ones on CPUs. Host-side agreement (stop flags, checkpoint files) goes over MPI either way.
// pp and cp are 1 until pipeline and context parallelism land; the mesh already lays them out.
#pragma once
#include <mpi.h>

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "yocotron/comm.h"
#include "yocotron/tp_ops.h"

namespace yt {

enum class MeshDim { dp = 0, pp = 1, cp = 2, tp = 3 };
constexpr int kMeshDims = 4;
const char* mesh_dim_name(MeshDim d);

class Mesh {
 public:
  int world_rank = 0, world_size = 1;
  int local_rank = 0;

  int size(MeshDim d) const { return dims_[static_cast<int>(d)].size; }
  int coord(MeshDim d) const { return dims_[static_cast<int>(d)].coord; }
  // Null when the dimension has one rank.
  Communicator* group(MeshDim d) const { return dims_[static_cast<int>(d)].group.get(); }
  MPI_Comm mpi(MeshDim d) const { return dims_[static_cast<int>(d)].mpi; }
  // The tensor-parallel context the parallel layers communicate over.
  TpContext tp_context(bool sequence_parallel) const;
  std::string describe() const;  // "dp=2 x tp=2" (dimensions of size 1 other than dp and tp left out)

  bool any_rank(bool local) const;  // logical OR over the world (host side)
  void barrier() const;
  // Gathers a string from every rank to rank 0 (host side); other ranks get an empty vector.
  std::vector<std::string> gather_strings(const std::string& mine) const;
  std::string broadcast_string(const std::string& from_rank0) const;

 private:
  struct Dim {
    int size = 1, coord = 0;
    std::unique_ptr<Communicator> group;
    MPI_Comm mpi = MPI_COMM_SELF;
  };
  std::array<Dim, kMeshDims> dims_;
  friend std::unique_ptr<Mesh> make_mesh(const std::array<int64_t, kMeshDims>&, bool, int);
};

// Splits the world into the mesh; `sizes` by MeshDim, dp = 0 meaning "the rest of the world". `gpu`
// selects NCCL (on cuda_device) or MPI communicators. Throws a ConfigError naming the parallel.* key
// when the sizes do not divide the world.
std::unique_ptr<Mesh> make_mesh(const std::array<int64_t, kMeshDims>& sizes, bool gpu, int cuda_device);
// The mesh a recipe asks for: parallel.tp, data parallel over the rest.
std::unique_ptr<Mesh> make_mesh(int64_t tp, bool gpu, int cuda_device);

}  // namespace yt
