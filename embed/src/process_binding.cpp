// Process-level bindings: launch, reap, sentinels.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "mphost/embed/bindings.hpp"
#include "mphost/embed/gil.hpp"
#include "mphost/runtime/exit_status.hpp"
#include "mphost/runtime/launch.hpp"
#include "mphost/runtime/parent_death.hpp"
#include "mphost/runtime/sentinel.hpp"

namespace py = pybind11;

namespace mphost::embed {

void bind_process(py::module_& m) {
  m.def("current_executable", &runtime::current_executable,
        "Absolute path of the running mphost executable.");

  m.def(
      "launch",
      [](const std::string& executable, const std::vector<std::string>& args, const std::vector<int>& pass_fds) {
        const runtime::launch_request request{executable, args, pass_fds};
        return without_gil([&] { return runtime::launch(request); });
      },
      py::arg("executable"), py::arg("args"), py::arg("pass_fds"),
      "Start `executable` with `args`, passing only `pass_fds` (and stdio). Returns the pid.");

  m.def(
      "wait_for_exit",
      [](pid_t pid, bool block) {
        // A signal that interrupts the wait runs the Python handlers; the
        // wait goes on unless they raised.
        const std::optional<int> code =
            without_gil([&] { return runtime::wait_for_exit(pid, block, &check_signals_without_gil); });
        throw_if_python_error();
        return code;
      },
      py::arg("pid"), py::arg("block"),
      "Reap `pid` if it ended: its exit code (0, n or -signum), or None while it runs.");

  m.def("open_sentinel", &runtime::open_process_sentinel, py::arg("pid"),
        "A pidfd for `pid`: readable once the process has ended.");
  m.def("pidfd_supported", &runtime::pidfd_supported);

  m.def(
      "die_with_parent",
      [](int parent_pidfd, pid_t expected_ppid) { runtime::watch_parent(parent_pidfd, expected_ppid); },
      py::arg("parent_pidfd"), py::arg("expected_ppid") = 0,
      "In a child: be killed once `parent_pidfd` (a pidfd of the parent) is readable; at once if it "
      "already is, or if expected_ppid is given and is no longer the kernel parent.");
}

}  // namespace mphost::embed
