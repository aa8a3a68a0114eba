// The `_mphost` extension module, built into the launcher and registered
// before the interpreter starts.
#include <pybind11/pybind11.h>

#include "mphost/embed/bindings.hpp"
#include "mphost/embed/errors.hpp"
#include "mphost/embed/queue_port.hpp"

PYBIND11_MODULE(_mphost, m) {
  m.doc() = "mphost's native runtime: process launch, fork, forkserver, IPC.";
  mphost::embed::register_error_translation();
  mphost::embed::bind_process(m);
  mphost::embed::bind_handshake(m);
  mphost::embed::bind_forkserver(m);
  mphost::embed::bind_spawn(m);
  mphost::embed::bind_channel(m);
  mphost::embed::bind_connection(m);
  mphost::embed::bind_arena(m);
  mphost::embed::bind_sync(m);
  mphost::embed::bind_supervisor(m);
  mphost::embed::bind_manager(m);
  mphost::embed::bind_registry(m);
  mphost::embed::bind_state(m);
  if (!mphost::embed::add_queue_port(m.ptr())) throw pybind11::error_already_set();
}
