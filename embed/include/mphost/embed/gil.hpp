#pragma once
// GIL discipline for blocking calls.
//
// Blocking core calls run with the GIL released (pybind11::gil_scoped_release
// or py::call_guard). When such a call is interrupted by a signal, the core
// asks `check_signals_without_gil()`: it takes the GIL, runs the Python
// signal handlers and reports whether the call may go on. When it returns
// false a Python exception (e.g. KeyboardInterrupt) is pending, and the
// binding raises it with `throw_if_python_error()` once it holds the GIL.

namespace mphost::embed {

bool check_signals_without_gil() noexcept;

// Raises pybind11::error_already_set if a Python error is pending. GIL held.
void throw_if_python_error();

}  // namespace mphost::embed
