// Size arithmetic that cannot wrap: an int64 that remembers whether any operation leading to it
// overflowed. Parameter, FLOP and memory counts are computed in it, and the caller turns an overflow
// into an error naming the recipe keys involved (a wrapped count would look like a real one).
#pragma once
#include <cstdint>
#include <limits>

namespace yt {

class CheckedInt {
 public:
  constexpr CheckedInt(int64_t v = 0) : v_(v) {}  // NOLINT: implicit, so sizes mix with literals

  bool overflowed() const { return bad_; }
  // The value; meaningless once overflowed() (callers check first).
  int64_t value() const { return v_; }

  friend CheckedInt operator+(CheckedInt a, CheckedInt b) {
    CheckedInt r;
    r.bad_ = a.bad_ || b.bad_ || __builtin_add_overflow(a.v_, b.v_, &r.v_);
    return r;
  }
  friend CheckedInt operator-(CheckedInt a, CheckedInt b) {
    CheckedInt r;
    r.bad_ = a.bad_ || b.bad_ || __builtin_sub_overflow(a.v_, b.v_, &r.v_);
    return r;
  }
  friend CheckedInt operator*(CheckedInt a, CheckedInt b) {
    CheckedInt r;
    r.bad_ = a.bad_ || b.bad_ || __builtin_mul_overflow(a.v_, b.v_, &r.v_);
    return r;
  }
  // Division of a non-negative count by b > 0, rounding down or up.
  friend CheckedInt floor_div(CheckedInt a, int64_t b) {
    CheckedInt r;
    r.bad_ = a.bad_ || b <= 0;
    if (!r.bad_) r.v_ = a.v_ / b;
    return r;
  }
  friend CheckedInt ceil_div(CheckedInt a, int64_t b) {
    CheckedInt r = floor_div(a, b);
    if (!r.bad_ && a.v_ % b != 0) r.v_ += 1;
    return r;
  }
  CheckedInt& operator+=(CheckedInt b) { return *this = *this + b; }
  CheckedInt& operator*=(CheckedInt b) { return *this = *this * b; }

 private:
  int64_t v_ = 0;
  bool bad_ = false;
};

}  // namespace yt
