// Builds the decoder a recipe describes: shape and KV plan from `model`, weights seeded by
// `train.seed`, then `model.init_from` applied.
#pragma once
#include "yocotron/decoder.h"

namespace yt {

Decoder build_decoder(const Config& cfg, const TpContext& tp = {});

}  // namespace yt
