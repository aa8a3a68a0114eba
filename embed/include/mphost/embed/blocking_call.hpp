#pragma once
// How a binding waits on the core: the one blocking-call helper.
//
// timeout_deadline(timeout, until, nan_message)
//   The core's deadline for a Python timeout argument, read as the stdlib
//   reads timeouts: nullptr (not given) or None waits forever; a real number
//   (int, float, anything float() takes) is seconds from now, fixed here;
//   zero or negative means one attempt and no wait; +inf, or more than the
//   clock can hold, waits forever. NaN raises ValueError(nan_message); a
//   value float() refuses raises float()'s TypeError. Returns false with the
//   Python error set.
//
// blocking_call(until, attempt, first) -> std::optional<ipc::wait_result>
//   Calls attempt(d), which makes one core call against deadline d and
//   returns its wait_result, until the outcome is neither `interrupted` nor
//   `timed_out` before `until`:
//   - The first attempt, with first_attempt::holding_gil (the default), runs
//     with the GIL held and deadline::immediate(): the common case needs no
//     wait and costs no GIL switch. With first_attempt::released it runs
//     without the GIL against `until` (for calls that may take long even
//     when they need not wait: a large copy, a socket read).
//   - Every later attempt runs with the GIL released, against the same
//     `until` (retries never stretch a timeout).
//   - Signals: the attempts that may wait run within an ipc::interrupt_watch
//     (interrupt.hpp), and the signals that have Python handlers note
//     themselves to it (signal_tap.hpp). So a signal that lands at any
//     moment of the wait, in any thread, ends the attempt at once with
//     `interrupted`, not only one that finds the thread inside a system
//     call (EINTR). Before the first such attempt, and after each
//     `interrupted`, the watch is rearmed and, with the GIL,
//     PyErr_CheckSignals() runs the Python handlers of the signals recorded
//     so far (in the main thread; elsewhere it does nothing, as in CPython).
//     If one raised (KeyboardInterrupt for SIGINT, or whatever a handler
//     raised), blocking_call returns nullopt with that exception pending.
//     Otherwise the wait resumes with the time left; a deadline that passed
//     meanwhile still gets one attempt (as sem_timedwait tries once).
//   - A std::exception thrown by `attempt` (e.g. errc::handle_closed when
//     another thread closes the endpoint) is set as the Python error
//     errors.cpp maps it to; nullopt.
//   Otherwise it returns the last outcome: ok, owner_died, closed, or
//   timed_out once `until` has passed. The GIL is held on entry and on
//   return; `attempt` must not touch Python objects (it mostly runs without
//   the GIL), only memory the caller keeps pinned (buffers it holds).
//
// blocking_call(python_timeout{timeout, nan_message}, attempt)
//   The same with the first attempt holding the GIL, and the timeout read
//   (timeout_deadline) only when that attempt could not complete: a call
//   that needs no wait reads no clock, and ignores its timeout argument.
//   nullopt with the error set when the timeout is not one.
//
// Core calls that wait with an EINTR loop of their own either take
// check_signals_without_gil() as that loop's hook (runtime::wait_for_exit)
// or resume on their own (handshake, forkserver, spawn); bindings run them
// through without_gil() (gil.hpp). Nothing else in embed/ releases the GIL,
// but for the forkserver zygote's fork hooks (fork_hooks.hpp), which give
// back the GIL they took for each fork.

#include <optional>
#include <utility>

#include "mphost/embed/errors.hpp"
#include "mphost/embed/gil.hpp"
#include "mphost/embed/python.hpp"
#include "mphost/embed/signal_tap.hpp"
#include "mphost/ipc/deadline.hpp"
#include "mphost/ipc/interrupt.hpp"
#include "mphost/ipc/wait_result.hpp"

namespace mphost::embed {

inline constexpr const char* default_nan_message = "timeout must not be NaN";

bool timeout_deadline(PyObject* timeout, ipc::deadline& until, const char* nan_message = default_nan_message);

enum class first_attempt : bool { holding_gil, released };

// Whether blocking_call waits again after `result` (see above).
inline bool keeps_waiting(ipc::wait_result result, const ipc::deadline& until) noexcept {
  return result == ipc::wait_result::interrupted || (result == ipc::wait_result::timed_out && !until.expired());
}

namespace detail {

// With the GIL, at the start of a wait and after each `interrupted`: the
// watch looks from now on, and the handlers of the signals recorded until
// now run. False when one raised (its exception is pending).
inline bool run_signal_handlers(ipc::interrupt_watch& watch) {
  watch.rearm();
  return PyErr_CheckSignals() == 0;
}

// The loop of blocking_call once it must wait: after a first attempt made
// with the GIL gave `result`, or (nullopt) before any attempt.
template <class Attempt>
std::optional<ipc::wait_result> keep_waiting(std::optional<ipc::wait_result> result, const ipc::deadline& until,
                                             Attempt& attempt) {
  if (result && !keeps_waiting(*result, until)) return result;
  tap_python_signals();
  ipc::interrupt_watch watch;
  bool handler_raised = false;
  const bool done = errors_to_python([&] {
    bool look = true;
    while (!result || keeps_waiting(*result, until)) {
      if ((look || *result == ipc::wait_result::interrupted) && !run_signal_handlers(watch)) {
        handler_raised = true;
        return;
      }
      look = false;
      const released_gil released;
      result = attempt(until);
    }
  });
  if (!done || handler_raised) return std::nullopt;
  return result;
}

}  // namespace detail

template <class Attempt>
std::optional<ipc::wait_result> blocking_call(const ipc::deadline& until, Attempt&& attempt,
                                              first_attempt first = first_attempt::holding_gil) {
  if (first == first_attempt::released) return detail::keep_waiting(std::nullopt, until, attempt);
  ipc::wait_result result = ipc::wait_result::timed_out;
  if (!errors_to_python([&] { result = attempt(ipc::deadline::immediate()); })) return std::nullopt;
  return detail::keep_waiting(result, until, attempt);
}

// A timeout argument as the caller got it, read only if the call must wait.
struct python_timeout {
  PyObject* value;  // nullptr (not given), None, or a number of seconds
  const char* nan_message = default_nan_message;
};

template <class Attempt>
std::optional<ipc::wait_result> blocking_call(const python_timeout& timeout, Attempt&& attempt) {
  ipc::wait_result result = ipc::wait_result::timed_out;
  if (!errors_to_python([&] { result = attempt(ipc::deadline::immediate()); })) return std::nullopt;
  if (result != ipc::wait_result::timed_out && result != ipc::wait_result::interrupted) return result;
  ipc::deadline until = ipc::deadline::immediate();
  if (!timeout_deadline(timeout.value, until, timeout.nan_message)) return std::nullopt;
  return detail::keep_waiting(result, until, attempt);
}

}  // namespace mphost::embed
