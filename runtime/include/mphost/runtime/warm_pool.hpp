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
// A pool keeps several spares when children are started in bursts (see
// spare_policy), refilled by one background thread.
//
// Thread-safe. Fork-safe only through the three fork calls below, which the
// owner registers with pthread_atfork: the pool's lock is taken before the
// fork (so the child never inherits it held by a thread that does not exist
// there), released after it in the parent, and in the child the spares,
// which belong to the parent, are dropped without being touched.

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

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

// How many spares a pool keeps. It keeps `wanted` of them (at least one
// once a child was taken): `wanted` grows with bursts (children taken less
// than `burst_gap` apart count as one burst; a burst of n asks for n spares;
// the default gap tells a Pool making its workers from a loop that starts
// and joins one child at a time, where extra spares would only compete for
// the CPU with the child at work),
// up to `limit`, and falls back to one when no child was taken for
// `idle_drop` (the extra spares are stopped then: an idle program keeps one
// spare, which blocks in a read).
struct spare_policy {
  std::size_t limit = 1;
  std::chrono::milliseconds burst_gap{10};
  std::chrono::milliseconds idle_drop{5000};
};

class warm_pool {
 public:
  // The most spares a pool keeps, whatever the policy says.
  static constexpr std::size_t max_spares = 64;

  warm_pool();
  warm_pool(const warm_pool&) = delete;
  warm_pool& operator=(const warm_pool&) = delete;
  ~warm_pool();

  // A spare started under `key` (and the current inherited state), oldest
  // first, else nullopt; spares started under another key are stopped and
  // reaped. Counts towards the burst that sizes the pool.
  std::optional<waiting_child> take(const std::string& key);

  // Starts a spare for `key` unless one is already there.
  void stock(const launch_request& request, const std::string& key);

  // Brings the pool up to the wanted number of spares for `key` on a
  // background thread (one per pool, started on first use, blocked on a
  // condition variable while there is nothing to do), so that the caller
  // does not wait for fork and exec. The children are started with the
  // caller's signal mask. Errors leave the pool short (the next take()
  // starts a child cold).
  void stock_in_background(const launch_request& request, const std::string& key);

  void set_policy(const spare_policy& policy);

  // pthread_atfork's prepare, parent and child handlers. before_fork() is
  // never called with the lock held by the calling thread: the pool holds it
  // only briefly, never across a fork, a callback or a wait.
  void before_fork() noexcept;
  void after_fork_in_parent() noexcept;
  // Drops the parent's spares (their sockets closed, the children left to
  // the parent) and the refill thread, which does not exist here.
  void after_fork_in_child() noexcept;

  bool has_spare() const;
  std::size_t spare_count() const;

 private:
  void refill_loop();
  std::vector<waiting_child> drop_extras_locked();

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  // Oldest first. Its capacity is reserved once, so that a fork in another
  // thread never finds it halfway through a reallocation.
  std::vector<waiting_child> spares_;
  std::string key_;  // with the inherited state fingerprint
  std::optional<launch_request> request_;  // what the refill thread starts
  sigset_t mask_{};  // the signal mask it starts children with
  spare_policy policy_;
  std::size_t wanted_ = 1;
  std::size_t burst_ = 0;
  std::size_t launching_ = 0;
  std::uint64_t generation_ = 0;  // bumped when the spares are dropped
  std::chrono::steady_clock::time_point last_take_{};
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace mphost::runtime
