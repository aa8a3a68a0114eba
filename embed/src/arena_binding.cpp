// Arena bindings: the shared memory and block allocator under the shim's heap
// (heap.py). Nothing here blocks: the heap's own lock serializes calls, and
// an allocation is a walk over a few free extents. The core's failures
// (std::system_error) reach Python through errors.cpp's translator
// (register_error_translation), as OSError with the errno.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "mphost/embed/bindings.hpp"
#include "mphost/ipc/arena.hpp"

namespace py = pybind11;

namespace mphost::embed {
namespace {

py::list as_pairs(const std::vector<ipc::arena::extent>& extents) {
  py::list out;
  for (const auto& e : extents) out.append(py::make_tuple(e.start, e.stop));
  return out;
}

}  // namespace

void bind_arena(py::module_& m) {
  py::class_<ipc::arena>(m, "Arena", py::buffer_protocol(),
                         "A nameless 0600 shared memory file, mapped; read and write it through "
                         "memoryview(). The creating process carves it with allocate/release.")
      .def(py::init([](std::size_t size) { return ipc::arena::create(size); }), py::arg("size"),
           "A fresh zero-filled arena of `size` bytes, all free.")
      .def_static("adopt", &ipc::arena::adopt, py::arg("fd"), py::arg("size"),
                  "Map the arena whose descriptor `fd` this process received (taken over).")
      .def_property_readonly("fd", &ipc::arena::fd)
      .def_property_readonly("size", &ipc::arena::size)
      .def_property_readonly("blocks_in_use", &ipc::arena::blocks_in_use)
      .def(
          "allocate",
          [](ipc::arena& a, std::size_t bytes) -> py::object {
            const auto block = a.allocate(bytes);
            if (!block) return py::none();
            return py::make_tuple(block->start, block->stop);
          },
          py::arg("bytes"), "(start, stop) of a fresh block, rounded up to 16 bytes; None when full.")
      .def("release", &ipc::arena::release, py::arg("start"), "Give back the block in use at `start`.")
      .def("free_extents", [](const ipc::arena& a) { return as_pairs(a.free_extents()); })
      .def("used_blocks", [](const ipc::arena& a) { return as_pairs(a.used_blocks()); })
      .def_buffer([](ipc::arena& a) {
        // The mapping lives as long as this object, which every memoryview
        // over it keeps alive.
        return py::buffer_info(a.data(), 1, py::format_descriptor<unsigned char>::format(), 1,
                               {static_cast<py::ssize_t>(a.size())}, {1}, /*readonly=*/false);
      });
}

}  // namespace mphost::embed
