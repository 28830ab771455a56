#include "yocotron/model_factory.h"

#include "yocotron/hf.h"

namespace yt {

Decoder build_decoder(const Config& cfg, const TpContext& tp) {
  Decoder model(cfg.model, tp);
  model->set_exec_options({parse_recompute(cfg.train.recompute), cfg.train.loss_chunk_tokens});
  model->init_weights(static_cast<uint64_t>(cfg.train.seed));
  apply_init_from(model, cfg.model.init_from);
  return model;
}

}  // namespace yt
