// The MPI process environment: initialised once per process, finalised at exit.
// World rank/size, the node-local rank (which GPU this rank drives) and the library version.
#pragma once
#include <string>

namespace yt {

class MpiEnv {
 public:
  // Initialises MPI (thread level FUNNELED) on first use; later calls return the same object.
  static MpiEnv& get();
  // Callable before and without initialisation: the MPI library's own version string.
  static std::string library_version();
  static bool initialized();

  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }

  MpiEnv(const MpiEnv&) = delete;
  MpiEnv& operator=(const MpiEnv&) = delete;

 private:
  MpiEnv();
  ~MpiEnv();
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
};

}  // namespace yt
