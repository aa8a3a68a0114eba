#pragma once
// mphost's own error codes and their std::error_category.
//
// Setup and resource failures in the core throw std::system_error carrying
// either an errno (std::system_category) or one of these codes. Expected
// outcomes of blocking calls (timeout, peer closed while waiting, a dead
// owner) are returned as values instead; see wait_result.hpp.
// embed/src/errors.cpp maps every code here to the Python exception the
// stdlib raises for the same condition.

#include <string>
#include <system_error>

namespace mphost {

enum class errc {
  peer_closed = 1,          // the other end of a channel or connection is gone
  message_too_large,        // a frame exceeds what the channel or peer accepts
  buffer_too_short,         // a receive buffer cannot hold the message
  corrupt_frame,            // bytes that do not form a valid frame or message
  auth_failed,              // the peer failed the authkey challenge
  handle_closed,            // an operation on a handle that was closed
  released_too_many_times,  // a bounded semaphore released past its bound
  worker_lost,              // a pool worker died while holding a task
  not_owner,                // a recursive lock released by a thread that does not hold it
  broken_barrier,           // a barrier was broken (aborted, timed out, reset, or a party died)
};

const std::error_category& mphost_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), mphost_category()};
}

// Throws std::system_error for the current errno, with `what` naming the call.
[[noreturn]] void throw_errno(const char* what);
[[noreturn]] void throw_errno(int err, const char* what);

}  // namespace mphost

template <>
struct std::is_error_code_enum<mphost::errc> : std::true_type {};
