// Forkserver bindings: the zygote loop and its client requests.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "mphost/embed/bindings.hpp"
#include "mphost/embed/fork_hooks.hpp"
#include "mphost/embed/gil.hpp"
#include "mphost/runtime/forkserver.hpp"
#include "mphost/runtime/names.hpp"

namespace py = pybind11;

namespace mphost::embed {

void bind_forkserver(py::module_& m) {
  m.def(
      "forkserver_listen",
      [] {
        const runtime::forkserver_listener listener = runtime::open_forkserver_listener();
        return py::make_tuple(listener.fd, listener.directory, listener.path);
      },
      "Create a private 0700 directory and a listening socket in it: (fd, directory, path).");

  m.def("forkserver_token", &runtime::new_forkserver_token, "A fresh forkserver secret.");

  m.def("remove_private_directory", &runtime::remove_private_directory, py::arg("path"));
  m.def("sweep_orphaned_directories", &runtime::sweep_orphaned_directories, py::arg("prefix"),
        "Remove private directories whose creating process is gone; returns how many.");

  m.def(
      "run_zygote",
      [](int listen_fd, int alive_fd, const std::string& token) {
        // The fork hooks take the GIL for each fork and give it back, in the
        // parent and in the child alike, through the scope's saved state.
        released_gil released;
        return runtime::run_zygote(listen_fd, alive_fd, token, interpreter_fork_hooks_without_gil(released.state()));
      },
      py::arg("listen_fd"), py::arg("alive_fd"), py::arg("token"),
      "Serve fork requests until alive_fd closes (returns None); in each forked child, "
      "returns the list of descriptors its client sent.");

  m.def(
      "forkserver_request",
      [](const std::string& path, const std::string& token, const std::vector<int>& fds) {
        const runtime::forked_child child = without_gil([&] { return runtime::request_fork(path, token, fds); });
        return py::make_tuple(child.pid, child.status_fd);
      },
      py::arg("path"), py::arg("token"), py::arg("fds"),
      "Ask the zygote for a child receiving `fds`: (pid, status_fd).");

  m.def(
      "forkserver_read_exit_code",
      [](int status_fd) { return without_gil([&] { return runtime::read_child_exit_code(status_fd); }); },
      py::arg("status_fd"), "The child's exit code from its status descriptor, or None.");
}

}  // namespace mphost::embed
