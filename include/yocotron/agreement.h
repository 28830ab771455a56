// Rank agreement: before any collective on model tensors, every rank of an MPI job checks that it
// runs the same thing as rank 0 — the same binary, the same resolved recipe, the same run directory,
// the same data. A rank launched with another recipe or `--set` (an MPMD launch, a stale binary on
// one node, a different dataset copy) would otherwise train apart in silence, or fail later in a
// collective whose size depends on the model (MPI_ERR_TRUNCATE, a segfault).
//
// The comparison sends only fixed-size messages until it is known which rank differs: every rank
// sends rank 0 a 64-bit hash and the length of its items; only then does the first differing rank
// send its items (length first, then bytes) so that rank 0 can name the first differing key.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "yocotron/config.h"

namespace yt {

// (key, value) pairs in a fixed order; every rank builds them the same way.
using AgreementItems = std::vector<std::pair<std::string, std::string>>;

// Recipe keys that may differ between ranks and are left out of the comparison: log.level alone
// (it changes only what a rank prints, so one rank can be debugged in an MPMD launch).
bool may_differ_between_ranks(const std::string& key);

// The binary's version (yocotron version and git revision, plus `extra`, e.g. the LibTorch
// version), then every key of flatten(cfg) but those above.
AgreementItems config_agreement_items(const Config& cfg, const std::string& extra_version = "");

// Collective over MPI_COMM_WORLD: every rank calls it once with its own items. Returns "" when every
// rank holds the same items; otherwise the same one-line message on every rank, naming the first key
// that differs, its values and the ranks holding them, e.g.
//   ranks disagree on train.lr: rank 0 has 0.001, rank 1 has 0.5 (launch every rank with the same
//   recipe and --set options)
// With one rank it returns "" at once.
std::string rank_disagreement(const AgreementItems& mine);

// Collective over MPI_COMM_WORLD: rank 0's `text` on every rank (its length first, then its bytes).
// For decisions rank 0 takes alone before the mesh exists (the run-directory lock, the checkpoint to
// resume from). With one rank it returns `text`.
std::string broadcast_from_rank0(std::string text);

// Ends a failure that every rank of the job reached at the same point, from inputs they agree on:
// prints "error: MESSAGE" on stderr when `print`, waits until every rank has got there (so that
// mpirun, which ends the job when a first rank exits non-zero, cuts no rank short of its message)
// and returns `code` for the rank to exit with. Needs no MPI_Abort, so mpirun prints no abort banner.
int fail_together(const std::string& message, bool print, int code);

}  // namespace yt
