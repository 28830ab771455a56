// Runs under `mpirun -np 2` (ctest): MPI is up, ranks are distinct, and an all-reduce of a torch
// tensor's storage gives the closed-form sum.
#include <mpi.h>
#include <torch/torch.h>

#include "catch.hpp"
#include "yocotron/mpi_env.h"

TEST_CASE("MPI ranks see each other and all-reduce a torch tensor", "[mpi]") {
  auto& env = yt::MpiEnv::get();
  REQUIRE(env.size() >= 2);
  REQUIRE(env.rank() >= 0);
  REQUIRE(env.rank() < env.size());
  REQUIRE(env.local_rank() < env.local_size());

  // Rank r contributes (r + 1) * [1, 2, ..., 8]; the sum is size(size+1)/2 * [1..8].
  auto t = torch::arange(1, 9, torch::kFloat64) * static_cast<double>(env.rank() + 1);
  MPI_Allreduce(MPI_IN_PLACE, t.data_ptr<double>(), static_cast<int>(t.numel()), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  double factor = env.size() * (env.size() + 1) / 2.0;
  auto expected = torch::arange(1, 9, torch::kFloat64) * factor;
  CHECK(torch::equal(t, expected));

  int ranks_sum = env.rank();
  MPI_Allreduce(MPI_IN_PLACE, &ranks_sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  CHECK(ranks_sum == env.size() * (env.size() - 1) / 2);
}
