// The learning-rate schedule: linear warmup from lr/warmup to train.lr over train.warmup_steps,
// then cosine, linear or constant decay to train.min_lr at train.steps.
#pragma once
#include <cstdint>

#include "yocotron/config.h"

namespace yt {

double lr_at(const TrainConfig& t, int64_t step);  // step counts from 0

}  // namespace yt
