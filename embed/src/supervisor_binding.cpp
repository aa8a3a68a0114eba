// _mphost.supervisor: the table of this process's children
// (runtime/supervisor.hpp), as multiprocessing.process and the popen_*
// modules use it. A child is named by its ticket; an unknown ticket raises
// ChildProcessError (ECHILD, through errors.cpp), as waitpid on a pid that
// is not a child does. wait() sleeps through blocking_call.hpp.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>

#include "mphost/embed/bindings.hpp"
#include "mphost/embed/blocking_call.hpp"
#include "mphost/embed/fork_hooks.hpp"
#include "mphost/runtime/supervisor.hpp"

namespace py = pybind11;

namespace mphost::embed {
namespace {

runtime::supervisor& table() { return runtime::supervisor::of_this_process(); }

runtime::start_method method_named(const std::string& name) {
  for (const auto method : {runtime::start_method::fork, runtime::start_method::spawn, runtime::start_method::forkserver}) {
    if (name == runtime::to_string(method)) return method;
  }
  throw py::value_error("unknown start method: " + name);
}

py::object view_of(runtime::child_ticket ticket) {
  const std::optional<runtime::child_view> seen = table().view(ticket);
  if (!seen) return py::none();
  py::dict row;
  row["pid"] = seen->pid;
  row["sentinel"] = seen->sentinel;
  row["start_time"] = seen->start_time;
  row["method"] = runtime::to_string(seen->method);
  row["daemon"] = seen->daemon;
  row["orphan"] = seen->orphan;
  row["ended"] = seen->ended;
  row["exitcode"] = seen->exit_code ? py::object(py::int_(*seen->exit_code)) : py::none();
  return row;
}

// True once the child has ended, False when `timeout` passed first.
bool wait_for(runtime::child_ticket ticket, const py::object& timeout) {
  const std::optional<ipc::wait_result> outcome =
      blocking_call(python_timeout{timeout.ptr()},
                    [ticket](const ipc::deadline& until) { return table().wait(ticket, until); });
  if (!outcome) throw py::error_already_set();
  return *outcome == ipc::wait_result::ok;
}

}  // namespace

void bind_supervisor(py::module_& m) {
  py::module_ s = m.def_submodule(
      "supervisor", "The children of this process: started, watched, reaped once, ended at exit.");

  s.def(
      "fork",
      [](bool daemon) {
        if (!fork_allowed())
          throw py::value_error(
              "the fork start method is not allowed in this application: it embeds Python with "
              "allow_fork off (mphost::embed::application_settings); use 'spawn' or 'forkserver'");
        const runtime::forked child = table().fork_child(interpreter_fork_hooks(), daemon);
        return py::make_tuple(child.pid, child.ticket);
      },
      py::arg("daemon") = false,
      "fork() with the interpreter's fork protocol, the child entered in the table: (pid, ticket) in "
      "the parent, (0, 0) in the child. A daemon child is killed when this process ends, however it ends.");

  s.def(
      "admit",
      [](pid_t pid, const std::string& method, bool daemon, int status_fd) {
        return table().admit({.pid = pid, .method = method_named(method), .daemon = daemon, .status_fd = status_fd});
      },
      py::arg("pid"), py::arg("method"), py::arg("daemon") = false, py::arg("status_fd") = -1,
      "Enter a started child in the table: its ticket. With status_fd (a forkserver child), the table "
      "owns that descriptor and reads the exit code from it; otherwise it opens a pidfd.");

  s.def(
      "poll", [](runtime::child_ticket ticket) { return table().poll(ticket); }, py::arg("ticket"),
      "The exit code (0, n or -signum) once the child has ended, else None; collected once, shared by all.");

  s.def("wait", &wait_for, py::arg("ticket"), py::arg("timeout") = py::none(),
        "Wait until the child has ended (True) or `timeout` seconds passed (False).");

  s.def(
      "signal", [](runtime::child_ticket ticket, int signo) { table().signal(ticket, signo); }, py::arg("ticket"),
      py::arg("signo"), "Send `signo` to the child unless its exit code was collected.");

  s.def(
      "running", [] { return table().running(); },
      "The tickets of the children without an exit code, in start order (ended ones are reaped).");

  s.def(
      "release", [](runtime::child_ticket ticket) { table().release(ticket); }, py::arg("ticket"),
      "Drop the handle: an ended child leaves the table, a running one is reaped once it ends.");

  s.def(
      "reap_orphans", [] { return table().reap_orphans(); },
      "Reap the released children that ended; the number still running.");

  s.def(
      "end_children", [] { return table().end_children(ipc::deadline::immediate()); },
      "The exit path's last step: SIGTERM to every daemon child still running, reap those that "
      "ended, without waiting. The number still running.");

  s.def(
      "identity",
      [](runtime::child_ticket ticket) {
        const auto [pid, sentinel] = table().identity(ticket);
        return py::make_tuple(pid, sentinel);
      },
      py::arg("ticket"), "(pid, sentinel) of a child in the table; ChildProcessError if it is not in it.");
  s.def("view", &view_of, py::arg("ticket"), "What the table knows of a child (a dict), None if not in it.");
  s.def(
      "size", [] { return table().size(); }, "The number of children in the table.");
}

}  // namespace mphost::embed
