#pragma once
// GIL discipline for blocking calls.
//
// Every binding that can block gives the GIL up through this header, and
// waits on the core through blocking_call.hpp, which builds on it:
//
//   released_gil  the GIL released for a scope (PyEval_SaveThread) and taken
//       back however the scope is left. Taking it back may end the thread (a
//       daemon thread that comes back into a finalizing interpreter is ended
//       with pthread_exit, whose unwinding must pass through), so the
//       destructor is not noexcept: a noexcept one would abort the process.
//       state() is the saved thread state, for fork hooks that take the GIL
//       and give it back around a fork inside the scope (fork_hooks.hpp).
//   without_gil(fn)  fn() in such a scope; its result or exception passes
//       through once the GIL is back. For core calls that do not report
//       interruptions (they retry EINTR themselves, or take the hook below).
//   check_signals_without_gil()  the hook for core loops that are told of
//       EINTR while the GIL is released (runtime::wait_for_exit): it takes
//       the GIL, runs the Python signal handlers and reports whether the call
//       may go on. When it returns false a Python exception (e.g.
//       KeyboardInterrupt) is pending, and the binding raises it with
//       throw_if_python_error() once it holds the GIL.

#include <utility>

#include "mphost/embed/python.hpp"

namespace mphost::embed {

class released_gil {
 public:
  released_gil() noexcept : state_(PyEval_SaveThread()) {}
  ~released_gil() noexcept(false) { PyEval_RestoreThread(state_); }
  released_gil(const released_gil&) = delete;
  released_gil& operator=(const released_gil&) = delete;

  PyThreadState*& state() noexcept { return state_; }

 private:
  PyThreadState* state_;
};

template <class Fn>
decltype(auto) without_gil(Fn&& fn) {
  const released_gil released;
  return std::forward<Fn>(fn)();
}

bool check_signals_without_gil() noexcept;

// Raises pybind11::error_already_set if a Python error is pending. GIL held.
void throw_if_python_error();

}  // namespace mphost::embed
