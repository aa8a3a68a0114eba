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

#include <system_error>

#include "mphost/embed/python.hpp"

namespace mphost::embed {

// Sets the Python error for `error`. Requires the GIL.
void set_python_error(const std::system_error& error);

// Registers set_python_error with pybind11 for every binding.
void register_error_translation();

}  // namespace mphost::embed
