// Decode steps replayed from a CUDA graph. At small batches a decode step is bound by launching its
// few hundred kernels (TinyLlama shape, batch 1: ~5 ms of launches for ~0.7 ms of weight reads), so
// the step of Decoder::forward_decode_at, whose kernels do not depend on the cache length, is
// captured once and replayed; the host only writes the new tokens and the slot. The price: attention
// reads the whole capacity under a mask, so graphs pay only while the cache is small next to the
// weights (decode_graphs_pay). On the CPU, or when graphs are off, a step is forward_cached.
#pragma once
#include <ATen/ATen.h>

#include <memory>
#include <string>

#include "yocotron/decoder.h"

namespace yt {

class KvCache;

enum class DecodeGraphs { Auto, On, Off };
DecodeGraphs parse_decode_graphs(const std::string& value, const std::string& key);  // auto|on|off

// Whether replaying a graph beats eager decode for this cache: a CUDA model without tensor
// parallelism whose cache, read whole every step, is at most the weights' bytes.
bool decode_graphs_pay(const Decoder& model, const KvCache& cache);

class DecodeStepper {
 public:
  // use_graph: capture on CUDA (ignored on the CPU). The stepper and its graph belong to this cache.
  DecodeStepper(Decoder& model, KvCache& cache, bool use_graph);
  ~DecodeStepper();
  DecodeStepper(const DecodeStepper&) = delete;
  DecodeStepper& operator=(const DecodeStepper&) = delete;

  // tokens [B, 1] go to slot cache.length(); the cache advances by one. Returns the logits [B, vocab],
  // valid until the next call (a graph's output buffer). Without a graph: forward_cached.
  at::Tensor step(const at::Tensor& tokens);
  bool uses_graph() const { return use_graph_; }

 private:
  at::Tensor run();
  at::Tensor step_eagerly(const at::Tensor& tokens);

  Decoder& model_;
  KvCache& cache_;
  bool use_graph_;
  at::Tensor tokens_, slot_, logits_;  // the graph's static input and output
  int warmups_ = 0;
  struct Graph;
  std::unique_ptr<Graph> graph_;
};

}  // namespace yt
