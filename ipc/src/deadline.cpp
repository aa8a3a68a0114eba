#include "mphost/ipc/deadline.hpp"

#include <cmath>
#include <stdexcept>

namespace mphost::ipc {

deadline deadline::after(clock::duration timeout) noexcept {
  const auto now = clock::now();
  if (timeout <= clock::duration::zero()) return deadline(now);
  if (timeout >= clock::time_point::max() - now) return infinite();
  return deadline(now + timeout);
}

deadline deadline::from_seconds(double seconds) {
  if (std::isnan(seconds)) throw std::invalid_argument("timeout is NaN");
  if (seconds <= 0.0) return immediate();
  // Anything beyond ~290 years of nanoseconds cannot be represented: infinite.
  constexpr double limit = 9.0e9;  // seconds; well inside int64 nanoseconds
  if (std::isinf(seconds) || seconds >= limit) return infinite();
  const auto ns = std::chrono::nanoseconds(static_cast<long long>(seconds * 1e9));
  return after(std::chrono::duration_cast<clock::duration>(ns));
}

deadline deadline::earliest(const deadline& a, const deadline& b) noexcept {
  if (a.infinite_) return b;
  if (b.infinite_) return a;
  return a.when_ <= b.when_ ? a : b;
}

deadline::clock::duration deadline::remaining() const noexcept {
  if (infinite_) return clock::duration::max();
  const auto now = clock::now();
  return now >= when_ ? clock::duration::zero() : when_ - now;
}

timespec deadline::to_monotonic_timespec() const noexcept {
  // libstdc++'s steady_clock reads CLOCK_MONOTONIC, so its epoch is the same.
  const auto since = std::chrono::duration_cast<std::chrono::nanoseconds>(when_.time_since_epoch()).count();
  timespec ts{};
  if (since <= 0) return ts;
  ts.tv_sec = static_cast<time_t>(since / 1000000000);
  ts.tv_nsec = static_cast<long>(since % 1000000000);
  return ts;
}

}  // namespace mphost::ipc
