// Handshake bindings: length-prefixed messages over an inherited descriptor.
#include <pybind11/pybind11.h>

#include "mphost/embed/bindings.hpp"
#include "mphost/embed/gil.hpp"
#include "mphost/runtime/handshake.hpp"

namespace py = pybind11;

namespace mphost::embed {

void bind_handshake(py::module_& m) {
  m.def(
      "write_message",
      [](int fd, const py::bytes& payload) {
        const std::string_view view = payload;
        without_gil([&] { runtime::write_message(fd, std::as_bytes(std::span(view.data(), view.size()))); });
      },
      py::arg("fd"), py::arg("payload"), "Write one length-prefixed message.");

  m.def(
      "read_message",
      [](int fd) {
        const std::vector<std::byte> payload = without_gil([&] { return runtime::read_message(fd); });
        return py::bytes(reinterpret_cast<const char*>(payload.data()), payload.size());
      },
      py::arg("fd"), "Read one length-prefixed message; EOFError if the peer closed first.");
}

}  // namespace mphost::embed
