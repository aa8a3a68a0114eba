#pragma once
// The pieces of the `_mphost` module, one function per core noun. Each
// lives in src/<noun>_binding.cpp; module.cpp calls them all.
// Every binding that can block waits through blocking_call.hpp: the GIL
// released, EINTR turned into a signal check (so Ctrl-C raises
// KeyboardInterrupt), errors mapped by errors.cpp.

#include <pybind11/pybind11.h>

namespace mphost::embed {

void bind_process(pybind11::module_& m);
void bind_handshake(pybind11::module_& m);
void bind_forkserver(pybind11::module_& m);
void bind_spawn(pybind11::module_& m);
void bind_channel(pybind11::module_& m);
void bind_connection(pybind11::module_& m);
void bind_arena(pybind11::module_& m);
void bind_sync(pybind11::module_& m);
void bind_supervisor(pybind11::module_& m);
void bind_manager(pybind11::module_& m);
void bind_registry(pybind11::module_& m);
void bind_state(pybind11::module_& m);

}  // namespace mphost::embed

extern "C" PyObject* PyInit__mphost();
extern "C" PyObject* PyInit__multiprocessing();
