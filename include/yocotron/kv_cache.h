// Decode-time keys and values, allocated as the KV plan says: a layer whose plan caches K (or V)
// owns a buffer [B, H_cached / tp, capacity, D]; a layer that reuses or derives its keys and values
// from other layers (YOCO's top half, FusedKV, SkipV1Former's borrowed heads) stores nothing. So
// the bytes allocated per token are the plan's kv_cache_bytes_per_token. The sequences of a batch
// are left-padded to one length: sequence b's first pad[b] slots hold no token. Buffers start at
// zero: a masked slot is read (with weight 0) by a decode step over the whole capacity, and 0 * NaN
// from uninitialised memory would poison it.
// The original YOCO family adds the global K^/V^ (per token, like a layer's K/V) and constant state
// per (loop, self-decoder layer): a ring of the last W keys/values for a sliding-window layer (slot
// s lives at ring index s % W) or the d_h x d_h fp32 retention state per head.
#pragma once
#include <ATen/ATen.h>

#include <vector>

#include "yocotron/kv_plan.h"

namespace yt {

class KvCache {
 public:
  KvCache(const KvPlan& plan, int64_t head_dim, int tp_size, int64_t batch, int64_t capacity,
          const at::TensorOptions& options, std::vector<int64_t> pad = {});

  int64_t batch() const { return batch_; }
  int64_t capacity() const { return capacity_; }
  int64_t length() const { return length_; }  // slots filled, the same for every sequence
  int64_t bytes() const;                      // bytes allocated for keys and values

  bool padded() const { return padded_; }
  const std::vector<int64_t>& pad() const { return pad_; }
  const at::Tensor& pad_tensor() const { return pad_tensor_; }  // [B] int64 on the cache's device

  bool stores_k(int layer) const { return k_[layer].defined(); }
  bool stores_v(int layer) const { return v_[layer].defined(); }
  // Layer `layer`'s stored keys / values for slots [0, n): views [B, H, n, D].
  at::Tensor keys(int layer, int64_t n) const { return k_[layer].narrow(2, 0, n); }
  at::Tensor values(int layer, int64_t n) const { return v_[layer].narrow(2, 0, n); }
  // Writes [B, H, T, D] into slots [length(), length() + T); advance() makes them part of the cache
  // once every layer has written.
  void write_k(int layer, const at::Tensor& k) { k_[layer].narrow(2, length_, k.size(2)).copy_(k); }
  void write_v(int layer, const at::Tensor& v) { v_[layer].narrow(2, length_, v.size(2)).copy_(v); }
  // The same for one token at a slot held on the device ([1] int64), so that the host does not
  // choose the address (a CUDA graph replays the same kernels at every length).
  void write_k_at(int layer, const at::Tensor& k, const at::Tensor& slot) { k_[layer].index_copy_(2, slot, k); }
  void write_v_at(int layer, const at::Tensor& v, const at::Tensor& slot) { v_[layer].index_copy_(2, slot, v); }
  void advance(int64_t tokens);
  // A cache holding sequences `rows` of this one (repeats allowed), filled to the same length: a
  // prefix prefilled once continues as several sequences (evaluation scores each choice so).
  KvCache select_rows(const std::vector<int64_t>& rows) const;

  // Original YOCO family.
  bool has_global() const { return global_k_.defined(); }
  at::Tensor global_keys(int64_t n) const { return global_k_.narrow(2, 0, n); }  // [B, H_kv, n, D]
  at::Tensor global_values(int64_t n) const { return global_v_.narrow(2, 0, n); }
  void write_global(const at::Tensor& k, const at::Tensor& v);  // [B, H_kv, T, D] at [length(), + T)
  // Ring buffers [B, H_kv, W, D] and retention states [B, h, D, D] of self-decoder layer `layer` in
  // loop `loop`; the ring's index r holds the newest slot s < length() with s % W == r.
  at::Tensor& window_k(int loop, int layer) { return window_k_.at(state_index(loop, layer)); }
  at::Tensor& window_v(int loop, int layer) { return window_v_.at(state_index(loop, layer)); }
  at::Tensor& retention_state(int loop, int layer) { return state_.at(state_index(loop, layer)); }
  // Benchmarks only: pretend `n` slots are filled (their contents are whatever the buffers hold),
  // to time a decode step at any cache length without decoding up to it.
  void set_length_for_timing(int64_t n);

 private:
  KvCache() = default;
  int64_t batch_ = 0, capacity_ = 0, length_ = 0;
  bool padded_ = false;
  std::vector<int64_t> pad_;
  at::Tensor pad_tensor_;
  std::vector<at::Tensor> k_, v_;  // per layer; undefined where the layer stores none
  at::Tensor global_k_, global_v_;
  int self_layers_ = 0;
  std::vector<at::Tensor> window_k_, window_v_, state_;  // per (loop, self layer); undefined where unused
  size_t state_index(int loop, int layer) const { return static_cast<size_t>(loop * self_layers_ + layer); }
};

}  // namespace yt
