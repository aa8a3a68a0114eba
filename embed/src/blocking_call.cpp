#include "mphost/embed/blocking_call.hpp"

#include <cmath>

namespace mphost::embed {

bool timeout_deadline(PyObject* timeout, ipc::deadline& until, const char* nan_message) {
  if (timeout == nullptr || timeout == Py_None) {
    until = ipc::deadline::infinite();
    return true;
  }
  const double seconds = PyFloat_AsDouble(timeout);
  if (seconds == -1.0 && PyErr_Occurred() != nullptr) return false;
  if (std::isnan(seconds)) {
    PyErr_SetString(PyExc_ValueError, nan_message);
    return false;
  }
  until = ipc::deadline::from_seconds(seconds);
  return true;
}

}  // namespace mphost::embed
