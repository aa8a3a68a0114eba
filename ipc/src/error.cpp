#include "mphost/ipc/error.hpp"

#include <cerrno>

namespace mphost {
namespace {

class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "mphost"; }
  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::peer_closed: return "the peer has closed its end";
      case errc::message_too_large: return "message too large";
      case errc::buffer_too_short: return "buffer too short for the message";
      case errc::corrupt_frame: return "corrupt or truncated message";
      case errc::auth_failed: return "authentication failed";
      case errc::handle_closed: return "handle is closed";
      case errc::released_too_many_times: return "semaphore or lock released too many times";
      case errc::worker_lost: return "a worker process died";
      case errc::not_owner: return "attempt to release recursive lock not owned by thread";
      case errc::broken_barrier: return "the barrier is broken";
    }
    return "unknown mphost error";
  }
};

}  // namespace

const std::error_category& mphost_category() noexcept {
  static const category instance;
  return instance;
}

void throw_errno(const char* what) { throw_errno(errno, what); }

void throw_errno(int err, const char* what) {
  throw std::system_error(err, std::system_category(), what);
}

}  // namespace mphost
