#pragma once
// Signals that cut a wait short, whenever they land.
//
// A signal handler interrupts a system call only when one is in progress in
// the thread it runs in (EINTR). A handler that runs while the waiting thread
// is between two sleeps (spinning, looking at a peer's liveness, starting the
// next slice of a long wait), or that the kernel runs in another thread,
// leaves the wait no trace: it would sleep on to its deadline. So the core
// keeps a process-wide count of signals, which waits can watch:
//
// note_signal()
//   Moves the count on and wakes every wait that watches it. Async-signal-
//   safe (an atomic add, a futex wake, an eventfd write; errno is kept). The
//   layer that installs the process's signal handlers calls it from them,
//   after the handler's own work, so that a wait woken by the note finds that
//   work done (embed/ notes every signal that has a Python handler).
// signal_count()
//   The count now.
// interrupt_watch
//   A scope (per thread; scopes nest, the inner one wins until it ends) in
//   which this thread's waits watch the count from the scope's start or its
//   last rearm(). Once the count has moved, futex_wait returns `interrupted`
//   instead of sleeping, and a note wakes a futex_wait that sleeps: it waits
//   on its word and on the count at once (futex_waitv), so no note is lost
//   between the look and the sleep. poll_readable() likewise. A call whose
//   deadline has passed does not sleep and is not cut short. rearm() takes
//   the count again: after the caller has handled what the note was about
//   and goes on waiting.
// interrupt_shield
//   A scope in which this thread's waits watch nothing (EINTR still
//   interrupts them). robust_mutex::lock() waits in one: its callers hold
//   such locks for a few instructions and retry on `interrupted`.
// poll_readable(fd, until)
//   poll() for POLLIN on one descriptor: ok (readable, or hung up: a read
//   will tell), timed_out, interrupted (EINTR, or the watched count moved),
//   closed (poll failed: a descriptor that is not open). Within a watch it
//   polls a process-wide eventfd beside `fd`, which note_signal() writes.
//
// Outside any watch nothing changes: only EINTR in the waiting thread
// interrupts a wait. Kernels without futex_waitv (before 5.16) get a look
// at the count just before each sleep instead, which leaves a window of a
// few instructions in which a note waits for the next wake-up.

#include <cstdint>

#include "mphost/ipc/deadline.hpp"
#include "mphost/ipc/futex.hpp"
#include "mphost/ipc/wait_result.hpp"

namespace mphost::ipc {

void note_signal() noexcept;

std::uint32_t signal_count() noexcept;

class interrupt_watch {
 public:
  interrupt_watch() noexcept;
  ~interrupt_watch();
  interrupt_watch(const interrupt_watch&) = delete;
  interrupt_watch& operator=(const interrupt_watch&) = delete;

  void rearm() noexcept;

 private:
  bool outer_watching_;
  std::uint32_t outer_seen_;
};

class interrupt_shield {
 public:
  interrupt_shield() noexcept;
  ~interrupt_shield();
  interrupt_shield(const interrupt_shield&) = delete;
  interrupt_shield& operator=(const interrupt_shield&) = delete;

 private:
  bool outer_watching_;
};

wait_result poll_readable(int fd, const deadline& until) noexcept;

namespace detail {

// What this thread's waits watch: whether they do, and the count they
// started from. For futex.cpp.
struct watched_count {
  bool watching = false;
  std::uint32_t seen = 0;
};
watched_count& this_thread_watch() noexcept;

// The count's word, waited on beside a futex by a watching wait.
const futex_word& signal_word() noexcept;

}  // namespace detail
}  // namespace mphost::ipc
