#include "yocotron/mesh.h"

#include <stdexcept>
#include <vector>

#include "yocotron/config.h"
#include "yocotron/mpi_env.h"
#include "yocotron/str.h"

namespace yt {

std::unique_ptr<Mesh> make_mesh(int64_t tp, bool gpu, int cuda_device) {
  auto& env = MpiEnv::get();
  auto m = std::make_unique<Mesh>();
  m->world_rank = env.rank();
  m->world_size = env.size();
  m->local_rank = env.local_rank();
  if (tp < 1 || m->world_size % tp != 0)
    throw ConfigError({cat("parallel.tp=", tp, " does not divide the number of processes (", m->world_size, ")")});
  m->tp = static_cast<int>(tp);
  m->dp = m->world_size / m->tp;
  m->tp_rank = m->world_rank % m->tp;
  m->dp_rank = m->world_rank / m->tp;
  MPI_Comm_split(MPI_COMM_WORLD, m->dp_rank, m->tp_rank, &m->tp_mpi);  // same dp_rank: one TP group
  MPI_Comm_split(MPI_COMM_WORLD, m->tp_rank, m->dp_rank, &m->dp_mpi);  // same tp_rank: one DP group
  auto make = [&](MPI_Comm c, const char* name) -> std::unique_ptr<Communicator> {
    int size = 1;
    MPI_Comm_size(c, &size);
    if (size == 1) return nullptr;
    return gpu ? make_nccl_communicator(c, name, cuda_device) : make_mpi_communicator(c, name);
  };
  m->tp_group = make(m->tp_mpi, "tp");
  m->dp_group = make(m->dp_mpi, "dp");
  return m;
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
