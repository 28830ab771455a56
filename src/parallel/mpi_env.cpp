#include "yocotron/mpi_env.h"

#include <mpi.h>

namespace yt {

MpiEnv& MpiEnv::get() {
  static MpiEnv env;
  return env;
}

bool MpiEnv::initialized() {
  int flag = 0;
  MPI_Initialized(&flag);
  return flag != 0;
}

std::string MpiEnv::library_version() {
  char buf[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(buf, &len);
  std::string s(buf, static_cast<size_t>(len));
  while (!s.empty() && (s.back() == '\n' || s.back() == '\0' || s.back() == ' ')) s.pop_back();
  auto comma = s.find(',');  // "Open MPI v4.1.4, package: ..." -> keep the first part
  return comma == std::string::npos ? s : s.substr(0, comma);
}

MpiEnv::MpiEnv() {
  if (!initialized()) {
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &local_rank_);
  MPI_Comm_size(local, &local_size_);
  MPI_Comm_free(&local);
}

MpiEnv::~MpiEnv() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

}  // namespace yt
