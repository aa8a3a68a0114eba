#pragma once
// The one translation point from C++ errors to Python exceptions.
//
//   errno (system category)        -> OSError subclass chosen by errno
//   errc::peer_closed              -> EOFError
//   errc::buffer_too_short         -> multiprocessing.BufferTooShort
//   errc::auth_failed              -> multiprocessing.AuthenticationError
//   errc::handle_closed            -> OSError("handle is closed")
//   errc::released_too_many_times  -> ValueError
//   errc::message_too_large        -> ValueError
//   errc::corrupt_frame            -> OSError(EBADMSG)
//   errc::worker_lost              -> multiprocessing.ProcessError
//   errc::not_owner                -> AssertionError (the stdlib's RLock message)
//   errc::broken_barrier           -> threading.BrokenBarrierError
// The multiprocessing exception classes are the shim's own (defined once, in
// multiprocessing/context.py), imported when first needed.
//
// pybind11 bindings get the mapping through register_error_translation();
// bindings written against the C API run core calls through
// errors_to_python(), which gives the same mapping (and RuntimeError for any
// other std::exception).

#include <exception>
#include <system_error>

#include "mphost/embed/python.hpp"

namespace mphost::embed {

// Sets the Python error for `error`. Requires the GIL.
void set_python_error(const std::system_error& error);

// Registers set_python_error with pybind11 for every binding.
void register_error_translation();

// Runs `fn`; true if it returned, false with the Python error set if it
// threw a std::exception (mapped as above). Requires the GIL. Other throws
// (a thread's forced unwinding) pass through.
template <class Fn>
bool errors_to_python(Fn&& fn) {
  try {
    fn();
    return true;
  } catch (const std::system_error& e) {
    set_python_error(e);
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return false;
}

}  // namespace mphost::embed
