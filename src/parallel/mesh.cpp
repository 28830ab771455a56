#include "yocotron/mesh.h"

#include <stdexcept>
#include <vector>

#include "yocotron/config.h"
#include "yocotron/mpi_env.h"
#include "yocotron/str.h"

namespace yt {

const char* mesh_dim_name(MeshDim d) {
  static const char* names[kMeshDims] = {"dp", "pp", "cp", "tp"};
  return names[static_cast<int>(d)];
}

std::unique_ptr<Mesh> make_mesh(const std::array<int64_t, kMeshDims>& sizes, bool gpu, int cuda_device) {
  auto& env = MpiEnv::get();
  auto m = std::unique_ptr<Mesh>(new Mesh());
  m->world_rank = env.rank();
  m->world_size = env.size();
  m->local_rank = env.local_rank();
  int64_t inner = 1;
  std::vector<std::string> named;
  for (int d = 1; d < kMeshDims; ++d) {
    const char* name = mesh_dim_name(static_cast<MeshDim>(d));
    if (sizes[d] < 1) throw ConfigError({cat("parallel.", name, "=", sizes[d], " must be >= 1")});
    if (sizes[d] > 1 || d == static_cast<int>(MeshDim::tp)) named.push_back(cat("parallel.", name, "=", sizes[d]));
    inner *= sizes[d];
  }
  if (m->world_size % inner != 0)
    throw ConfigError({cat(join(named, " x "), " does not divide the number of processes (", m->world_size, ")")});
  const int64_t dp = sizes[0] > 0 ? sizes[0] : m->world_size / inner;
  if (dp * inner != m->world_size)
    throw ConfigError({cat("a mesh of dp=", dp, " x ", join(named, " x "), " needs ", dp * inner, " processes, not ", m->world_size)});
  // Coordinates, innermost (tp) first; each group is the ranks that differ in one coordinate only.
  int rest = m->world_rank, stride = 1;
  std::array<int, kMeshDims> strides{};
  for (int d = kMeshDims - 1; d >= 0; --d) {
    auto& dim = m->dims_[d];
    dim.size = static_cast<int>(d == 0 ? dp : sizes[d]);
    dim.coord = rest % dim.size;
    rest /= dim.size;
    strides[d] = stride;
    stride *= dim.size;
  }
  for (int d = kMeshDims - 1; d >= 0; --d) {  // the same order on every rank: NCCL ids travel over MPI
    auto& dim = m->dims_[d];
    if (dim.size == 1) continue;
    MPI_Comm_split(MPI_COMM_WORLD, m->world_rank - dim.coord * strides[d], dim.coord, &dim.mpi);
    const char* name = mesh_dim_name(static_cast<MeshDim>(d));
    dim.group = gpu ? make_nccl_communicator(dim.mpi, name, cuda_device) : make_mpi_communicator(dim.mpi, name);
  }
  return m;
}

std::unique_ptr<Mesh> make_mesh(int64_t tp, bool gpu, int cuda_device) { return make_mesh({0, 1, 1, tp}, gpu, cuda_device); }

TpContext Mesh::tp_context(bool sequence_parallel) const {
  return {coord(MeshDim::tp), size(MeshDim::tp), group(MeshDim::tp), sequence_parallel && size(MeshDim::tp) > 1};
}

std::string Mesh::describe() const {
  std::vector<std::string> parts;
  for (int d = 0; d < kMeshDims; ++d) {
    const auto dim = static_cast<MeshDim>(d);
    if (dims_[d].size > 1 || dim == MeshDim::dp || dim == MeshDim::tp) parts.push_back(cat(mesh_dim_name(dim), "=", dims_[d].size));
  }
  return join(parts, " x ");
}

bool Mesh::any_rank(bool local) const {
  int v = local ? 1 : 0;
  if (world_size > 1) MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return v != 0;
}

void Mesh::barrier() const {
  if (world_size > 1) MPI_Barrier(MPI_COMM_WORLD);
}
std::vector<std::string> Mesh::gather_strings(const std::string& mine) const {
  if (world_size == 1) return {mine};
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(static_cast<size_t>(world_size));
  MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  std::vector<int> offs(static_cast<size_t>(world_size), 0);
  int total = 0;
  for (int i = 0; i < world_size; ++i) offs[i] = total, total += lens[i];
  std::string all(static_cast<size_t>(world_rank == 0 ? total : 0), '\0');
  MPI_Gatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), offs.data(), MPI_CHAR, 0, MPI_COMM_WORLD);
  std::vector<std::string> out;
  if (world_rank == 0)
    for (int i = 0; i < world_size; ++i) out.push_back(all.substr(static_cast<size_t>(offs[i]), static_cast<size_t>(lens[i])));
  return out;
}

std::string Mesh::broadcast_string(const std::string& from_rank0) const {
  if (world_size == 1) return from_rank0;
  int len = static_cast<int>(from_rank0.size());
  MPI_Bcast(&len, 1, MPI_INT, 0, MPI_COMM_WORLD);
  std::string s = world_rank == 0 ? from_rank0 : std::string(static_cast<size_t>(len), '\0');
  MPI_Bcast(s.data(), len, MPI_CHAR, 0, MPI_COMM_WORLD);
  return s;
}

}  // namespace yt
