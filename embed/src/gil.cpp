#include "mphost/embed/gil.hpp"

#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace mphost::embed {

bool check_signals_without_gil() noexcept {
  py::gil_scoped_acquire acquire;
  return PyErr_CheckSignals() == 0;
}

void throw_if_python_error() {
  if (PyErr_Occurred() != nullptr) throw py::error_already_set();
}

}  // namespace mphost::embed
