// Test runner: Catch2 session, with MPI initialised when launched under mpirun so that [mpi]
// tests see every rank. A process that fails on any rank exits non-zero, so mpirun reports it.
#if __has_include(<catch2/catch_session.hpp>)
#include <catch2/catch_session.hpp>
#else
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#endif
#include <cstdlib>

#include "helpers.h"
#include "yocotron/log.h"
#include "yocotron/mpi_env.h"

int main(int argc, char** argv) {
  int rank = 0;
  if (std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE")) rank = yt::MpiEnv::get().rank();
  yt::log::init(rank);
  yt::log::set_level(yt::log::Level::Warn);
  int failed = Catch::Session().run(argc, argv);
  yt::test::remove_temp_dirs();
  return failed;
}
