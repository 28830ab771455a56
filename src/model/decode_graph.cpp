#include "yocotron/decode_graph.h"

#include "yocotron/kv_cache.h"
#include "yocotron/str.h"

#ifdef YOCOTRON_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace yt {

DecodeGraphs parse_decode_graphs(const std::string& value, const std::string& key) {
  if (value == "auto") return DecodeGraphs::Auto;
  if (value == "on") return DecodeGraphs::On;
  if (value == "off") return DecodeGraphs::Off;
  throw std::invalid_argument(cat(key, " must be auto, on or off, found '", value, "'"));
}

bool decode_graphs_pay(const Decoder& model, const KvCache& cache) {
  const at::Tensor& w = model->embed_tokens->weight;
  // The original YOCO family's self-decoder state (window rings, retention) is addressed from the host.
  if (!w.is_cuda() || model->tp().size > 1 || model->plan().has_global_kv()) return false;
  int64_t weight_bytes = 0;
  for (const auto& p : model->parameters()) weight_bytes += p.numel() * static_cast<int64_t>(p.element_size());
  return cache.bytes() <= weight_bytes;
}

#ifdef YOCOTRON_WITH_CUDA
struct DecodeStepper::Graph {
  at::cuda::CUDAGraph graph;
};
#else
struct DecodeStepper::Graph {};
#endif

DecodeStepper::DecodeStepper(Decoder& model, KvCache& cache, bool use_graph)
    : model_(model),
      cache_(cache),
      use_graph_(use_graph && model->embed_tokens->weight.is_cuda() && !model->plan().has_global_kv()) {
  const auto dev = model->embed_tokens->weight.device();
  tokens_ = at::zeros({cache.batch(), 1}, at::TensorOptions().dtype(at::kLong).device(dev));
  slot_ = at::zeros({1}, tokens_.options());
}

DecodeStepper::~DecodeStepper() = default;

at::Tensor DecodeStepper::run() { return model_->forward_decode_at(tokens_, cache_, slot_); }

at::Tensor DecodeStepper::step_eagerly(const at::Tensor& tokens) {
  return model_->forward_cached(tokens.to(tokens_.device()), cache_);
}

at::Tensor DecodeStepper::step(const at::Tensor& tokens) {
  TORCH_CHECK(tokens.dim() == 2 && tokens.size(0) == cache_.batch() && tokens.size(1) == 1, "DecodeStepper: tokens must be [",
              cache_.batch(), ", 1]");
  if (cache_.length() >= cache_.capacity())
    throw std::out_of_range(cat("KV cache: ", cache_.length(), " + 1 tokens exceed its capacity of ", cache_.capacity()));
  if (!use_graph_) return step_eagerly(tokens);
  tokens_.copy_(tokens, /*non_blocking=*/true);
  slot_.fill_(cache_.length());
#ifdef YOCOTRON_WITH_CUDA
  if (!graph_ && warmups_ >= 2) {
    // Capture on a side stream, as CUDA requires; the graph's allocations come from its own pool
    // and live as long as it does. Two eager steps first settle lazy initialisation (cuBLAS
    // workspaces, kernel choices) that must not happen during capture.
    auto graph = std::make_unique<Graph>();
    const auto index = tokens_.device().index();
    auto main = c10::cuda::getCurrentCUDAStream(index), side = c10::cuda::getStreamFromPool(false, index);
    at::cuda::CUDAEvent inputs_ready, captured;
    inputs_ready.record(main);
    inputs_ready.block(side);
    {
      c10::cuda::CUDAStreamGuard guard(side);
      graph->graph.capture_begin();
      logits_ = run();  // recorded, not run: the replay below is this step
      graph->graph.capture_end();
    }
    captured.record(side);
    captured.block(main);
    graph_ = std::move(graph);
  }
  if (graph_) {
    graph_->graph.replay();
    cache_.advance(1);
    return logits_;
  }
  ++warmups_;
#endif
  at::Tensor logits = run();
  cache_.advance(1);
  return logits;
}

}  // namespace yt
