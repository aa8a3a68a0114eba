#pragma once
// Spawned children started ahead of time (warm spawn).
//
// A child in child mode initialises its interpreter and then waits in
// receive_handover() for its work. Starting one before it is needed takes
// interpreter start-up off the path of Process.start(); semantics stay those
// of spawn, since the child is still a fresh interpreter that has run nothing
// of the program.
//
// A spare is only valid for the conditions it was started in. Its key is the
// caller's description (executable, interpreter flags, relevant environment)
// plus inherited_state_fingerprint(): the process state a child inherits at
// exec and that the handover cannot correct (umask, signal mask, ignored
// signals, resource limits). take() with another key discards the spare.
//
// Thread-safe. After fork, the child must call forget(): the spare belongs to
// the parent.

#include <sys/types.h>

#include <mutex>
#include <optional>
#include <string>

#include "mphost/runtime/launch.hpp"

namespace mphost::runtime {

struct waiting_child {
  pid_t pid = -1;
  int sock = -1;  // our end of the handover socket (close-on-exec)
  ino_t inode = 0;  // of that socket: tells it from a later one with the same number
};

// True while `child.sock` is still the socket it was started with: a stray
// close elsewhere in the process (and the number's reuse) makes it false.
bool socket_intact(const waiting_child& child) noexcept;

// Stops a waiting child that will not get its work: SIGKILL, then reaped.
// Its socket is closed only if it is still the child's.
void abandon(const waiting_child& child) noexcept;

// Starts a child holding one end of a new socket pair. In `request.args`,
// the string "{fd}" is replaced by the child's descriptor number; that end is
// added to the inherited descriptors.
waiting_child launch_waiting_child(launch_request request);

// A digest of what a child inherits at exec besides descriptors and
// environment: umask, blocked and ignored signals, resource limits.
std::string inherited_state_fingerprint();

class warm_pool {
 public:
  warm_pool() = default;
  warm_pool(const warm_pool&) = delete;
  warm_pool& operator=(const warm_pool&) = delete;
  ~warm_pool();

  // The spare if it was started under `key` (and the current inherited
  // state), else nullopt; a mismatching spare is stopped and reaped.
  std::optional<waiting_child> take(const std::string& key);

  // Starts a spare for `key` unless one is already there.
  void stock(const launch_request& request, const std::string& key);

  // The same on a background thread, so that the caller does not wait for
  // fork and exec; at most one such start is under way at a time. Errors
  // leave the pool without a spare (the next take() starts a child cold).
  void stock_in_background(const launch_request& request, const std::string& key);

  // In a forked child: drop the spare without touching it.
  void forget() noexcept;

  bool has_spare() const;

 private:
  void discard_locked() noexcept;

  mutable std::mutex mutex_;
  std::optional<waiting_child> spare_;
  std::string key_;
  bool stocking_ = false;
};

}  // namespace mphost::runtime
