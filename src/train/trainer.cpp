// The training loop over a DP x TP mesh (one process is a 1 x 1 mesh): steps, metrics at log points
// (the only host syncs in a step), evaluation, checkpoints, a stop every rank agrees on. Before it,
// the checks that every rank makes together.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include <torch/version.h>

#include "yocotron/agreement.h"
#include "yocotron/checked_int.h"
#include "yocotron/checkpoint.h"
#include "yocotron/dataset.h"
#include "yocotron/device.h"
#include "yocotron/errors.h"
#include "yocotron/eval_run.h"
#include "yocotron/fileio.h"
#include "yocotron/flops.h"
#include "yocotron/loader.h"
#include "yocotron/log.h"
#include "yocotron/memory_plan.h"
#include "yocotron/mesh.h"
#include "yocotron/metrics.h"
#include "yocotron/model_factory.h"
#include "yocotron/model_source.h"
#include "yocotron/mpi_env.h"
#include "yocotron/optimizer.h"
#include "yocotron/phase.h"
#include "yocotron/profiler.h"
#include "yocotron/progress.h"
#include "yocotron/run_lock.h"
#include "yocotron/schedule.h"
#include "yocotron/stop_signal.h"
#include "yocotron/training_setup.h"
#include "yocotron/str.h"
#include "yocotron/tensorboard.h"
#include "yocotron/train_step.h"
#include "yocotron/trainer.h"
#include "yocotron/watchdog.h"

namespace yt {
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

// Test hooks (environment), to reach failure paths deterministically:
//   YOCOTRON_TEST_NAN_AT_STEPS=5,6       those steps' losses become NaN
//   YOCOTRON_TEST_SIGNAL_AFTER_STEP=5    the process sends itself SIGTERM after step 5
//   YOCOTRON_TEST_DIE=RANK:STEP          that rank kills itself (SIGKILL) after that step
//   YOCOTRON_TEST_STALL=RANK:STEP:SECS   that rank sleeps after that step (a stuck peer)
//   YOCOTRON_TEST_EVAL_BATCH_SECS=0.1    every evaluation batch takes that much longer (a long evaluation)
struct TestHooks {
  std::set<int64_t> nan_steps;
  int64_t signal_step = -1;
  std::vector<int64_t> die, stall;
  double eval_batch_secs = 0;

  TestHooks() {
    if (const char* s = std::getenv("YOCOTRON_TEST_NAN_AT_STEPS"))
      for (const auto& part : split(s, ','))
        if (!part.empty()) nan_steps.insert(std::stoll(part));
    if (const char* s = std::getenv("YOCOTRON_TEST_SIGNAL_AFTER_STEP")) signal_step = std::stoll(s);
    auto ints = [](const char* env) {
      std::vector<int64_t> v;
      if (const char* s = std::getenv(env))
        for (const auto& part : split(s, ':')) v.push_back(std::stoll(part));
      return v;
    };
    die = ints("YOCOTRON_TEST_DIE");
    stall = ints("YOCOTRON_TEST_STALL");
    if (const char* s = std::getenv("YOCOTRON_TEST_EVAL_BATCH_SECS")) eval_batch_secs = std::stod(s);
  }

  void after_step(int64_t step, int rank) const {
    if (step == signal_step) std::raise(SIGTERM);
    if (die.size() == 2 && die[0] == rank && die[1] == step) std::raise(SIGKILL);
    if (stall.size() == 3 && stall[0] == rank && stall[1] == step) std::this_thread::sleep_for(std::chrono::seconds(stall[2]));
  }

  void after_eval_batch() const {
    if (eval_batch_secs > 0) std::this_thread::sleep_for(std::chrono::duration<double>(eval_batch_secs));
  }
};

// An error that every rank reaches at the same point from inputs they agree on (the recipe, the
// data, rank 0's verdicts on the run directory and the checkpoint): every rank ends with exit status
// `code` (2: bad input, 1: a runtime error) through fail_together(), without MPI_Abort and its
// banner. `every_rank`: each rank prints the line, else rank 0 alone.
class JobError : public std::runtime_error {
 public:
  JobError(const std::string& message, bool every_rank, int code = 2)
      : std::runtime_error(message), every_rank_(every_rank), code_(code) {}
  bool every_rank() const { return every_rank_; }
  int code() const { return code_; }

 private:
  bool every_rank_;
  int code_;
};

struct Datasets {
  std::shared_ptr<const TokenDataset> train, val;  // val: null without evaluation
  std::vector<McTask> tasks;                       // train.eval_tasks, read
};

// What identifies a split's contents: its tokenizer, sizes and every shard's payload checksum.
std::string dataset_fingerprint(const TokenDataset& ds) {
  uint64_t h = fnv1a64(nullptr, 0);  // the offset basis
  auto mix = [&](uint64_t v) { h = fnv1a64(&v, sizeof v, h); };
  mix(ds.tokenizer_fingerprint());
  mix(ds.n_tokens());
  mix(ds.n_docs());
  for (const auto& sh : ds.shards()) {
    mix(sh.n_tokens());
    mix(sh.header().payload_crc32c);
  }
  return cat(hex64(h), " (", ds.n_tokens(), " tokens in ", ds.shards().size(), " shard", ds.shards().size() == 1 ? "" : "s", ")");
}

Datasets open_datasets(const Config& cfg) {
  if (cfg.data.train.empty()) throw ConfigError({"data.train: no training data (a split directory made by `yocotron tokenize`)"});
  Datasets d;
  d.train = TokenDataset::open(cfg.data.train);
  if (!cfg.data.val.empty() && cfg.train.eval_every > 0) d.val = TokenDataset::open(cfg.data.val);
  for (const auto& name : cfg.train.eval_tasks) {
    try {
      d.tasks.push_back(load_task(name, cfg.train.eval_tasks_data, cfg.train.eval_tasks_limit));
    } catch (const ConfigError& e) {  // every rank reads the same files: the same verdict
      throw JobError(cat("train.eval_tasks: ", e.what()), false);
    }
  }
  return d;
}

// "holds 40 tokens: 2 samples of data.seq_len+1 = 17 tokens"
std::string samples_text(const TokenDataset& ds, int64_t seq_len) {
  const uint64_t n = ds.n_samples(seq_len);
  return cat("holds ", ds.n_tokens(), " tokens: ", n, " sample", n == 1 ? "" : "s", " of data.seq_len+1 = ", seq_len + 1, " tokens");
}

// Checks of the data against the recipe, before the first step; every rank reaches the same verdict
// (the data are agreed). `dp`: the data-parallel size, 0 when parallel.tp does not divide the world
// (the mesh reports that).
void check_datasets(const Config& cfg, const Datasets& d, int64_t dp) {
  if (d.train->vocab_size() > static_cast<uint64_t>(cfg.model.vocab_size))
    throw JobError(cat("model.vocab_size=", cfg.model.vocab_size, " is smaller than the vocabulary of ", cfg.data.train, " (",
                       d.train->vocab_size(), ", ", d.train->manifest_path(), ")"),
                   false);
  if (d.val && d.val->tokenizer_fingerprint() != d.train->tokenizer_fingerprint())
    throw JobError(cat("data.val=", cfg.data.val, " was made by another tokenizer than data.train=", cfg.data.train), false);
  // Every step takes train.global_batch distinct samples, each rank its share of them.
  const int64_t T = cfg.data.seq_len;
  if (d.train->n_samples(T) < static_cast<uint64_t>(cfg.train.global_batch))
    throw JobError(cat("data.train=", d.train->split_dir(), " ", samples_text(*d.train, T), ", and one step takes train.global_batch=",
                       cfg.train.global_batch, " of them (use more data or a smaller data.seq_len or train.global_batch)"),
                   false);
  // Evaluation gives every data-parallel rank its own samples (wrapping around a split shorter than the pass).
  if (d.val && dp > 0 && d.val->n_samples(T) < static_cast<uint64_t>(dp))
    throw JobError(cat("data.val=", d.val->split_dir(), " ", samples_text(*d.val, T), ", and evaluation needs ",
                       dp == 1 ? "one" : cat("one for each of the ", dp, " data-parallel ranks"),
                       " (use a larger validation split, a smaller data.seq_len, or train.eval_every=0)"),
                   false);
}

class Trainer {
 public:
  Trainer(Config cfg, std::string run_dir, std::optional<LoadedCheckpoint> resume, Datasets data)
      : cfg_(std::move(cfg)), run_dir_(std::move(run_dir)), resume_(std::move(resume)),
        train_ds_(std::move(data.train)), val_ds_(std::move(data.val)), raw_tasks_(std::move(data.tasks)) {}

  int run();
  const Config& config() const { return cfg_; }
  OomContext oom_context() const { return {setup_ ? setup_->device.str() : "cpu", setup_ ? setup_->mesh->size(MeshDim::dp) : 1, ""}; }

 private:
  void build_model_and_optimizer();
  void open_data();
  void train_step();
  std::optional<double> evaluate();
  void prepare_tasks();
  std::optional<std::vector<TaskResult>> evaluate_tasks();
  bool val_due() const { return val_ds_ && step_ % cfg_.train.eval_every == 0; }
  bool tasks_due() const { return !tasks_.empty() && step_ % tasks_every_ == 0; }
  bool run_evaluation();
  int stop_on_signal();
  void log_point(bool force);
  void save();
  bool too_many_skipped();
  void maybe_start_profile();
  void finish_profile();
  bool rank0() const { return setup_->mesh->world_rank == 0; }

  Config cfg_;
  std::string run_dir_;
  std::optional<LoadedCheckpoint> resume_;
  std::shared_ptr<const TokenDataset> train_ds_, val_ds_;
  std::vector<McTask> raw_tasks_;       // train.eval_tasks as read; tokenized into tasks_
  std::vector<TokenizedTask> tasks_;    // this rank's share of their items tokenized
  int64_t tasks_every_ = 0;

  std::unique_ptr<TrainingSetup> setup_;  // device, precision, mesh, model, optimizer, step
  std::unique_ptr<TrainLoader> loader_;
  std::vector<std::unique_ptr<MetricsSink>> metrics_;  // rank 0 only: files, TensorBoard
  ProgressLine progress_;

  int64_t step_ = 0;  // optimizer steps completed
  uint64_t consumed_ = 0;
  int64_t tokens_per_step_ = 0;
  int64_t steps_in_interval_ = 0;
  int64_t last_checkpoint_step_ = -1;
  bool eval_pending_ = false;  // a stop cut short the evaluation of step_
  double last_lr_ = 0;
  Clock::time_point interval_start_, run_start_;
  double interval_tokens_ = 0;
  TestHooks hooks_;
  std::unique_ptr<Profiler> profiler_;  // while log.profile_steps are recorded
  int64_t profile_first_ = 0;
};

void Trainer::build_model_and_optimizer() {
  setup_->build(cfg_, /*ignore_init_from=*/resume_.has_value());  // the checkpoint's weights replace any initial ones
  if (!resume_) return;
  // The checkpoint holds global tensors; this rank keeps its tensor-parallel slice of each.
  const auto& specs = setup_->model->shard_specs();
  auto local = [&](const std::map<std::string, at::Tensor>& global) {
    std::map<std::string, at::Tensor> out;
    for (const auto& [name, t] : global) {
      auto it = specs.find(name);
      out[name] = it == specs.end() ? t : local_shard(t, it->second, setup_->mesh->coord(MeshDim::tp), setup_->mesh->size(MeshDim::tp));
    }
    return out;
  };
  const auto& t = resume_->tensors;
  try {  // a checkpoint whose tensors do not fit its own config.yaml: name the checkpoint
    for (const auto& [name, tensor] : t.model) {
      auto it = specs.find(name);
      if (it != specs.end() && tensor.sizes() != at::IntArrayRef(it->second.global_shape))
        throw std::runtime_error(cat("tensor '", name, "' has shape ", tensor.sizes(), ", the model's is ",
                                     at::IntArrayRef(it->second.global_shape)));
    }
    setup_->optimizer->load("master", local(t.model));
    setup_->optimizer->load("exp_avg", local(t.exp_avg));
    setup_->optimizer->load("exp_avg_sq", local(t.exp_avg_sq));
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(cat(resume_->dir, ": ", e.what()));
  }
  setup_->optimizer->set_adam_steps(resume_->state.adam_steps);
  if (t.rng.count("cpu")) {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    gen.set_state(t.rng.at("cpu"));
  }
  step_ = resume_->state.step;
  eval_pending_ = resume_->state.eval_pending;
  consumed_ = resume_->state.consumed_samples;
  // The token count of every later checkpoint is consumed_samples x data.seq_len: it must not wrap
  // before train.steps (a crafted state.json can carry valid checksums).
  const CheckedInt last_tokens = (CheckedInt(static_cast<int64_t>(std::min<uint64_t>(consumed_, INT64_MAX))) +
                                  CheckedInt(std::max<int64_t>(cfg_.train.steps - step_, 0)) * cfg_.train.global_batch) *
                                 cfg_.data.seq_len;
  if (consumed_ > static_cast<uint64_t>(INT64_MAX) || last_tokens.overflowed())
    throw std::runtime_error(cat(resume_->dir, "/state.json: consumed_samples ", consumed_, " at step ", step_,
                                 " would overflow the token count before train.steps=", cfg_.train.steps));
  setup_->step->skipped_total.fill_(static_cast<double>(resume_->state.skipped_total));
  last_checkpoint_step_ = step_;
  resume_->tensors = {};  // free the host copies
}

void Trainer::open_data() {
  LoaderOptions lo;
  lo.seq_len = cfg_.data.seq_len;
  lo.layout = {cfg_.train.global_batch, cfg_.train.micro_batch, setup_->mesh->coord(MeshDim::dp), setup_->mesh->size(MeshDim::dp)};
  lo.seed = static_cast<uint64_t>(cfg_.train.seed);
  lo.prefetch = cfg_.data.prefetch;
  lo.pin_memory = setup_->device.is_cuda();
  loader_ = std::make_unique<TrainLoader>(train_ds_, lo, consumed_);
  tokens_per_step_ = cfg_.train.global_batch * cfg_.data.seq_len;
}

void Trainer::train_step() {
  set_phase_step(step_ + 1);
  last_lr_ = lr_at(cfg_.train, step_);
  setup_->step->run([this] { return loader_->next(); }, loader_->accum_steps(), last_lr_, hooks_.nan_steps.count(step_ + 1) > 0);
  ++step_;
  ++steps_in_interval_;
  consumed_ += static_cast<uint64_t>(cfg_.train.global_batch);
  interval_tokens_ += static_cast<double>(tokens_per_step_);
}

// The mean val loss over train.eval_batches micro-batches per rank; nullopt when a stop signal cut it
// short. The ranks agree on the stop before every batch, so none is left waiting in a collective
// that the others have given up (TP inside the forward pass, DP in the final sum).
std::optional<double> Trainer::evaluate() {
  PhaseScope range(Phase::Evaluation, "yocotron::evaluation");
  torch::NoGradGuard no_grad;
  const int64_t T = cfg_.data.seq_len;
  at::Tensor total = at::zeros({}, setup_->step->loss_sum.options());
  for (int64_t i = 0; i < cfg_.train.eval_batches; ++i) {
    if (setup_->mesh->any_rank(stop_requested())) return std::nullopt;
    at::Tensor b = eval_batch(*val_ds_, T, cfg_.train.micro_batch, setup_->mesh->coord(MeshDim::dp), setup_->mesh->size(MeshDim::dp), i).to(setup_->device);
    total += setup_->model->loss(b.narrow(1, 0, T), b.narrow(1, 1, T)).to(at::kFloat);
    hooks_.after_eval_batch();
  }
  if (setup_->mesh->size(MeshDim::dp) > 1) setup_->mesh->group(MeshDim::dp)->all_reduce(total);
  return total.item<double>() / static_cast<double>(cfg_.train.eval_batches * setup_->mesh->size(MeshDim::dp));
}

// train.eval_tasks: every rank tokenizes its data-parallel share of the items once, with the
// tokenizer of the training data (the tokenizer service: SentencePiece cannot live in this process).
void Trainer::prepare_tasks() {
  if (raw_tasks_.empty()) return;
  tasks_every_ = cfg_.train.eval_tasks_every > 0 ? cfg_.train.eval_tasks_every : cfg_.train.eval_every;
  TokenizerSearch found = find_tokenizer("", cfg_);
  if (found.path.empty())
    throw JobError(cat("train.eval_tasks: no tokenizer to tokenize them (looked for ", join(found.searched, " and "), ")"), false);
  std::unique_ptr<TokenizerClient> tok;
  try {
    tok = std::make_unique<TokenizerClient>(found.path);
  } catch (const std::invalid_argument& e) {  // the data's tokenizer file is bad: every rank sees it
    throw JobError(cat("train.eval_tasks: ", e.what()), false);
  }
  const EvalShard shard{setup_->mesh->coord(MeshDim::dp), setup_->mesh->size(MeshDim::dp), setup_->mesh->mpi(MeshDim::dp)};
  for (auto& t : raw_tasks_) tasks_.push_back(tokenize_task(std::move(t), *tok, shard));
  raw_tasks_.clear();
}

// The tasks scored on the model as it is, sharded over the data-parallel ranks (eval_run.h); nullopt
// when a stop signal cut it short (the ranks agree on the stop before every batch).
std::optional<std::vector<TaskResult>> Trainer::evaluate_tasks() {
  PhaseScope range(Phase::Evaluation, "yocotron::eval_tasks");
  const EvalShard shard{setup_->mesh->coord(MeshDim::dp), setup_->mesh->size(MeshDim::dp), setup_->mesh->mpi(MeshDim::dp)};
  std::vector<TaskResult> out;
  for (const auto& t : tasks_) {
    auto scored = score_task(setup_->model, t, shard, cfg_.train.micro_batch, [this] {
      hooks_.after_eval_batch();
      return setup_->mesh->any_rank(stop_requested());
    });
    if (!scored) return std::nullopt;
    out.push_back(scored->result);
  }
  return out;
}

// Evaluates at step_ what is due there (the val loss, the tasks) and records the results; false when
// a stop signal cut it short (the checkpoint written next says so, and the resumed run evaluates
// step_ before its first step).
bool Trainer::run_evaluation() {
  std::optional<double> v;
  std::optional<std::vector<TaskResult>> tasks;
  bool stopped = false;
  if (val_due()) stopped = !(v = evaluate());
  if (!stopped && tasks_due()) stopped = !(tasks = evaluate_tasks());
  interval_start_ = Clock::now();  // evaluation is not training time
  if (stopped) {
    eval_pending_ = true;
    return false;
  }
  if (eval_pending_) last_checkpoint_step_ = -1;  // the checkpoint of step_ still lists this evaluation as due
  eval_pending_ = false;
  if (!rank0()) return true;
  const int64_t tokens = static_cast<int64_t>(consumed_) * cfg_.data.seq_len;
  if (v) {
    for (auto& m : metrics_) m->eval({step_, tokens, *v});
    progress_.message(cat("eval at step ", step_, ": val_loss ", *v, ", perplexity ", std::exp(*v)));
  }
  if (tasks) {
    for (auto& m : metrics_) m->tasks({step_, tokens, *tasks});
    std::vector<std::string> parts;
    for (const auto& t : *tasks)
      parts.push_back(cat(t.name, " acc ", format_double(std::round(t.acc * 1e4) / 1e4),
                          t.acc_norm ? cat(" acc_norm ", format_double(std::round(*t.acc_norm * 1e4) / 1e4)) : "", " (n=", t.n, ")"));
    progress_.message(cat("tasks at step ", step_, ": ", join(parts, ", ")));
  }
  return true;
}

// A stop signal reached some rank: every rank writes the checkpoint (as a scheduled one) and ends
// with kExitStopped once all have written it (mpirun ends the job when a first rank exits non-zero).
int Trainer::stop_on_signal() {
  finish_profile();  // the steps recorded so far
  log_point(true);
  // A fresh run stopped before its first step has nothing to keep: a resume starts it afresh.
  const bool keep = step_ > 0 || eval_pending_;
  if (keep) save();
  progress_.finish();
  const std::string reason = stop_reason();
  log::info("stopped by ", starts_with(reason, "signal") ? "a signal" : "request", " at step ", step_,
            eval_pending_ ? ", during its evaluation" : "", " (", reason, " here): ",
            keep ? cat("checkpoint ", checkpoint_name(step_), " holds it") : std::string("nothing to keep yet"),
            "; exit status ", kExitStopped, ", resume with --resume auto");
  log::flush();
  setup_->mesh->barrier();
  consume_stop_file();  // served: a requeued job must not stop on it again
  return kExitStopped;
}

bool Trainer::too_many_skipped() {
  return setup_->step->skipped_in_a_row.item<double>() >= static_cast<double>(cfg_.train.max_skipped_in_a_row);
}

void Trainer::log_point(bool force) {
  if (steps_in_interval_ == 0) return;
  if (!force && step_ % cfg_.log.every != 0) return;
  at::Tensor loss = setup_->step->loss_sum.clone();
  if (setup_->mesh->size(MeshDim::dp) > 1) setup_->mesh->group(MeshDim::dp)->all_reduce(loss);  // mean over the data-parallel replicas
  TrainRow r;
  r.step = step_;
  r.tokens = static_cast<int64_t>(consumed_) * cfg_.data.seq_len;
  r.loss = loss.item<double>() / static_cast<double>(steps_in_interval_ * setup_->mesh->size(MeshDim::dp));  // the step's only host wait
  r.lr = last_lr_;
  r.grad_norm = setup_->step->last_grad_norm.item<double>();
  r.skipped = static_cast<int64_t>(setup_->step->skipped_total.item<double>());
  double secs = std::chrono::duration<double>(Clock::now() - interval_start_).count();
  r.tokens_per_s = interval_tokens_ / secs / static_cast<double>(setup_->mesh->world_size);
  if (setup_->device.is_cuda()) r.mfu = mfu(cfg_.model, cfg_.data.seq_len, r.tokens_per_s);
  r.mem_gb = peak_memory_gb(setup_->cuda_index);
  r.elapsed_s = std::chrono::duration<double>(Clock::now() - run_start_).count();
  if (rank0()) {
    for (auto& m : metrics_) m->train(r);
    double eta = (cfg_.train.steps - step_) * secs / static_cast<double>(steps_in_interval_);
    std::ostringstream line;
    line << "step " << step_ << "/" << cfg_.train.steps << " | loss " << format_double(std::round(r.loss * 1e4) / 1e4)
         << " | lr " << last_lr_ << " | " << format_count(r.tokens_per_s) << " tok/s" << (setup_->mesh->world_size > 1 ? "/gpu" : "");
    if (r.mfu) line << " | MFU " << std::round(*r.mfu * 1000) / 10 << "%";
    line << " | " << std::round(r.mem_gb * 10) / 10 << " GB | ETA " << format_duration(eta);
    if (r.skipped > 0) line << " | skipped " << r.skipped;
    progress_.update(line.str());
    log::debug(line.str());
  }
  setup_->step->loss_sum.zero_();
  steps_in_interval_ = 0;
  interval_tokens_ = 0;
  interval_start_ = Clock::now();
}

void Trainer::save() {
  if (last_checkpoint_step_ == step_) return;
  if (too_many_skipped()) return;  // never from a run that is about to abort
  set_phase(Phase::Checkpoint);
  CheckpointState st;
  st.step = step_;
  st.tokens = static_cast<int64_t>(consumed_) * cfg_.data.seq_len;
  st.consumed_samples = consumed_;
  st.skipped_total = static_cast<int64_t>(setup_->step->skipped_total.item<double>());
  st.adam_steps = setup_->optimizer->adam_steps();
  st.eval_pending = eval_pending_;
  st.config_yaml = to_yaml(cfg_);
  CheckpointTensors t;  // collective with ZeRO-1: every rank gathers its TP shard's full state
  t.model = setup_->optimizer->tensors("master");
  t.exp_avg = setup_->optimizer->tensors("exp_avg");
  t.exp_avg_sq = setup_->optimizer->tensors("exp_avg_sq");
  t.rng["cpu"] = at::detail::getDefaultCPUGenerator().get_state();
  CheckpointLayout layout;
  layout.tp_rank = setup_->mesh->coord(MeshDim::tp);
  layout.tp = setup_->mesh->size(MeshDim::tp);
  layout.writer = setup_->mesh->coord(MeshDim::dp) == 0;
  layout.specs = setup_->model->shard_specs();
  auto t0 = Clock::now();
  std::string dir = write_checkpoint((fs::path(run_dir_) / "checkpoints").string(), st, t, cfg_.checkpoint.keep_last,
                                     layout, setup_->mesh.get());
  last_checkpoint_step_ = step_;
  if (rank0())
    progress_.message(cat("checkpoint ", dir, " (", format_duration(std::chrono::duration<double>(Clock::now() - t0).count()), ")"));
  interval_start_ = Clock::now();  // do not count the write as training time
}

// log.profile_steps [a, b]: the profiler records steps a..b (those of them this invocation runs).
void Trainer::maybe_start_profile() {
  const auto& ps = cfg_.log.profile_steps;
  if (profiler_ || ps.size() != 2 || step_ + 1 < ps[0] || step_ + 1 > ps[1]) return;
  profiler_ = std::make_unique<Profiler>(setup_->cuda_index);
  profile_first_ = step_ + 1;
}

void Trainer::finish_profile() {
  if (!profiler_) return;
  auto t0 = Clock::now();
  const std::string base = (fs::path(run_dir_) / "profile" / cat("steps_", profile_first_, "-", step_, ".rank", setup_->mesh->world_rank)).string();
  ProfileSummary s = profiler_->finish(base + ".json", base + ".summary.txt",
                                       cat("yocotron train: ", cfg_.model.arch, ", steps ", profile_first_, "-", step_, ", rank ",
                                           setup_->mesh->world_rank, " of ", setup_->mesh->world_size, ", ", setup_->device.str(), ", ",
                                           cfg_.train.precision, ", micro-batch ", cfg_.train.micro_batch, " x ", cfg_.data.seq_len));
  profiler_.reset();
  if (rank0()) progress_.message(cat("profile of steps ", profile_first_, "-", step_, ": ", s.trace_path, " and ", base, ".summary.txt"));
  interval_start_ += Clock::now() - t0;  // writing the trace is not training time
}

int Trainer::run() {
  setup_ = std::make_unique<TrainingSetup>(cfg_);
  if (rank0()) {
    fs::create_directories(run_dir_);
    write_text_file_atomic((fs::path(run_dir_) / "config.yaml").string(), to_yaml(cfg_));
  }
  build_model_and_optimizer();
  open_data();
  prepare_tasks();
  if (rank0()) {
    metrics_.push_back(std::make_unique<MetricsFiles>(run_dir_, step_));
    if (cfg_.log.tensorboard) metrics_.push_back(std::make_unique<TensorBoardWriter>(run_dir_, step_));
  }
  if (resume_) log::info("resumed from ", resume_->dir, " at step ", step_);
  ParamCounts pc = count_parameters(cfg_.model, setup_->model->plan());
  log::info("training ", cfg_.model.arch, " (", format_count(static_cast<double>(pc.total)), " parameters) on ",
            setup_->mesh->world_size, " process(es) (", setup_->mesh->describe(),
            setup_->model->tp().sequence_parallel ? ", sequence parallel" : "", setup_->optimizer->layout().zero1 ? ", ZeRO-1" : "",
            ", ", setup_->device.is_cuda() ? "cuda" : "cpu", ") in ", cfg_.train.precision, ": ", cfg_.train.steps,
            " steps of ", tokens_per_step_, " tokens, ", loader_->accum_steps(), " micro-batch(es) per step; run dir ", run_dir_);
  reset_peak_memory(setup_->cuda_index);
  run_start_ = interval_start_ = Clock::now();
  const int64_t start_step = step_;
  const bool cpu = !setup_->device.is_cuda();
  if (eval_pending_ && (val_due() || tasks_due()) && !run_evaluation()) return stop_on_signal();
  eval_pending_ = false;  // no longer due (no val split, or another train.eval_every)
  if (setup_->mesh->any_rank(stop_requested())) return stop_on_signal();  // a signal during a long startup
  while (step_ < cfg_.train.steps) {
    maybe_start_profile();
    train_step();
    if (profiler_ && step_ >= cfg_.log.profile_steps[1]) finish_profile();
    hooks_.after_step(step_, setup_->mesh->world_rank);
    // On the CPU a device value costs nothing to read, so check the skip streak every step.
    bool abort_now = (cpu || step_ % cfg_.log.every == 0) && too_many_skipped();
    log_point(abort_now);
    if (abort_now) {
      finish_profile();
      progress_.finish();
      log::error("aborting at step ", step_, ": ", cfg_.train.max_skipped_in_a_row,
                 " steps in a row had a non-finite loss or gradient norm (train.max_skipped_in_a_row); no checkpoint "
                 "was written from them, the last good one is kept");
      return 1;
    }
    if ((val_due() || tasks_due()) && !run_evaluation()) return stop_on_signal();
    if (setup_->mesh->any_rank(stop_requested())) return stop_on_signal();
    bool exit_after = cfg_.train.exit_after_steps > 0 && step_ - start_step >= cfg_.train.exit_after_steps;
    if (exit_after) finish_profile();  // the steps recorded so far
    if ((cfg_.checkpoint.every > 0 && step_ % cfg_.checkpoint.every == 0) || exit_after) {
      log_point(true);
      save();
    }
    if (exit_after) {
      progress_.finish();
      log::info("train.exit_after_steps=", cfg_.train.exit_after_steps, " reached at step ", step_,
                "; resume with --resume auto");
      return 0;
    }
  }
  log_point(true);
  save();
  progress_.finish();
  log::info("finished ", step_, " steps in ",
            format_duration(std::chrono::duration<double>(Clock::now() - run_start_).count()));
  return 0;
}

// Rank 0 locks the run directory for as long as this process runs, and tells the others whether it
// could: a second trainer on the same directory would delete the first one's checkpoint
// temporaries and rewrite its metrics files.
std::unique_ptr<RunDirLock> lock_run_dir(const std::string& run_dir, int world_rank) {
  std::unique_ptr<RunDirLock> lock;
  std::string verdict;  // "" = locked; "in use:..." or "error:..."
  if (world_rank == 0) {
    try {
      std::string holder, warning;
      lock = RunDirLock::try_acquire(run_dir, "yocotron train", &holder, &warning);
      if (!warning.empty()) log::warn(warning);
      if (!lock) verdict = "in use:" + holder;
    } catch (const std::exception& e) {
      verdict = std::string("error:") + e.what();
    }
  }
  verdict = broadcast_from_rank0(verdict);
  if (starts_with(verdict, "in use:"))
    throw JobError(cat(run_dir, ": in use by another trainer (", verdict.substr(7), ", as ", (fs::path(run_dir) / ".lock").string(),
                       " says); wait for it to end, or train into another --run-dir"),
                   false);
  if (starts_with(verdict, "error:")) throw JobError(verdict.substr(6), false, 1);
  return lock;
}

// The newest checkpoint under `ckpt_root` that verifies, warning about each newer one that does not.
std::optional<std::string> newest_verified_checkpoint(const std::string& ckpt_root) {
  std::vector<std::string> skipped;
  auto dir = newest_valid_checkpoint(ckpt_root, &skipped);
  for (const auto& s : skipped) log::warn("skipping checkpoint: ", s);
  if (!dir && !skipped.empty()) throw std::runtime_error(cat("no checkpoint in ", ckpt_root, " verifies (see the warnings above)"));
  return dir;
}

// Rank 0 decides where to resume from and tells the others ("" = fresh); a refusal reaches all.
std::optional<LoadedCheckpoint> choose_resume(const RunOptions& opts, const std::string& run_dir, int world_rank) {
  std::string decision;
  if (world_rank == 0) {
    try {
      std::string ckpt_root = (fs::path(run_dir) / "checkpoints").string();
      std::error_code ec;  // found now, not at the first checkpoint after hours of training
      if (fs::exists(fs::symlink_status(ckpt_root, ec)) && !fs::is_directory(ckpt_root, ec))
        throw ConfigError({cat(ckpt_root, ": exists and is not a directory (the run directory is damaged; move it aside)")});
      const fs::path given(opts.resume);
      if (opts.resume == "none") {
        auto existing = list_checkpoints(ckpt_root);
        if (!existing.empty())
          throw ConfigError({cat(ckpt_root, " holds checkpoints (newest ", fs::path(existing.front()).filename().string(),
                                       "): resume with --resume auto, or train into another --run-dir")});
        decision = "ok:";
      } else if (opts.resume == "auto") {
        decision = "ok:" + newest_verified_checkpoint(ckpt_root).value_or("");
      } else if (!fs::exists(given)) {
        throw ConfigError({cat("--resume ", opts.resume, ": no such checkpoint or run directory")});
      } else if (!fs::exists(given / "manifest.json") && fs::is_directory(given / "checkpoints")) {
        // A run directory (as export-hf and model.init_from accept): its newest checkpoint that verifies.
        auto dir = newest_verified_checkpoint((given / "checkpoints").string());
        if (!dir) throw ConfigError({cat("--resume ", opts.resume, ": a run directory without checkpoints")});
        decision = "ok:" + *dir;
      } else {
        verify_checkpoint(opts.resume);
        decision = "ok:" + opts.resume;
      }
    } catch (const ConfigError& e) {  // --resume contradicts the run directory: bad input, exit 2
      decision = std::string("input:") + e.what();
    } catch (const std::exception& e) {  // a checkpoint found damaged while reading it: exit 1
      decision = std::string("error:") + e.what();
    }
  }
  decision = broadcast_from_rank0(decision);
  if (starts_with(decision, "input:")) throw JobError(decision.substr(6), false, 2);
  if (starts_with(decision, "error:")) throw JobError(decision.substr(6), false, 1);
  std::string dir = decision.substr(3);
  if (dir.empty()) return std::nullopt;
  return load_checkpoint(dir, /*verify=*/false);  // rank 0 verified it
}

int train(const RunOptions& opts) {
  Config cfg = load_config(opts.recipe, opts.overrides);
  std::string run_dir = resolve_run_dir(opts, cfg);
  const int rank = MpiEnv::get().rank();
  log::init(rank);
  log::set_level(log::parse_level(cfg.log.level));
  install_stop_handlers();  // a signal from here on ends the run through its checkpoint (docs/training.md)
  // Every rank runs the same binary on the same recipe into the same run directory (docs/distributed.md).
  AgreementItems same = config_agreement_items(cfg, cat("LibTorch ", TORCH_VERSION));
  same.emplace_back("run directory", run_dir);
  same.emplace_back("--resume", opts.resume);  // one rank resuming while another starts afresh would diverge
  if (std::string differ = rank_disagreement(same); !differ.empty()) throw JobError(differ, true);
  // Nothing is written into the run directory before its lock is held.
  std::unique_ptr<RunDirLock> lock = lock_run_dir(run_dir, rank);
  // A wrapper whose mpirun does not forward signals asks for a stop with this file (docs/training.md).
  if (rank == 0) watch_stop_file((fs::path(run_dir) / "STOP").string());
  log::add_file((fs::path(run_dir) / "logs" / cat("rank", rank, ".log")).string());
  Datasets data = open_datasets(cfg);
  same = {{"data.train contents", dataset_fingerprint(*data.train)}};
  if (data.val) same.emplace_back("data.val contents", dataset_fingerprint(*data.val));
  if (std::string differ = rank_disagreement(same); !differ.empty()) throw JobError(differ, true);
  const int world = MpiEnv::get().size();
  check_datasets(cfg, data, world % cfg.parallel.tp == 0 ? world / cfg.parallel.tp : 0);
  std::optional<LoadedCheckpoint> resume = choose_resume(opts, run_dir, rank);
  if (resume) {
    Config saved = config_from_yaml(resume->state.config_yaml, {}, resume->dir + "/config.yaml");
    std::vector<std::string> errors, warnings;
    compare_for_resume(saved, cfg, errors, warnings);
    if (!errors.empty()) {
      for (auto& e : errors) e = cat("resume from ", resume->dir, ": ", e);
      throw ConfigError(errors);
    }
    for (const auto& w : warnings) log::warn("resume from ", resume->dir, ": ", w);
  }
  Trainer t(std::move(cfg), run_dir, std::move(resume), std::move(data));
  return with_out_of_memory_message(t.config(), [&] { return t.oom_context(); }, [&] { return t.run(); });
}

}  // namespace

int run_training(const RunOptions& opts) {
  const bool several = MpiEnv::get().size() > 1;
  // Several ranks: a failure on one must not leave the others waiting in a collective.
  try {
    int rc = train(opts);
    Watchdog::get().stop();
    return rc;
  } catch (const JobError& e) {  // every rank is here: end together, cleanly
    Watchdog::get().stop();
    const bool print = e.every_rank() || MpiEnv::get().rank() == 0;
    log::flush();
    return fail_together(e.what(), print, e.code());
  } catch (const ConfigError& e) {
    if (!several) throw;
    for (const auto& p : e.problems()) log::error(p);
    log::flush();
    MPI_Abort(MPI_COMM_WORLD, 2);
  } catch (const std::exception& e) {
    if (!several) throw;
    log::error(error_text(e));
    log::flush();
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  return 1;
}

}  // namespace yt
