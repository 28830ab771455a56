// Precompiled once per target: torch's headers dominate compile time (~20 s per translation unit).
#pragma once
#include <torch/torch.h>
