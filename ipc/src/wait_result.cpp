#include "mphost/ipc/wait_result.hpp"

namespace mphost::ipc {

const char* to_string(wait_result result) noexcept {
  switch (result) {
    case wait_result::ok: return "ok";
    case wait_result::timed_out: return "timed_out";
    case wait_result::closed: return "closed";
    case wait_result::owner_died: return "owner_died";
    case wait_result::interrupted: return "interrupted";
  }
  return "unknown";
}

}  // namespace mphost::ipc
