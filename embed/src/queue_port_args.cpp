// Arguments of the queue port's calls (queue_port_args.hpp).
#include "queue_port_args.hpp"

#include <cmath>

namespace mphost::embed {

bool parse_block_timeout(const char* fn, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames, Py_ssize_t skip,
                         bool simple, PyObject*& block, PyObject*& timeout) {
  block = nullptr;
  timeout = nullptr;
  if (nargs < skip) {
    PyErr_Format(PyExc_TypeError, "%s() missing required argument 'obj'", fn);
    return false;
  }
  const Py_ssize_t given = nargs + (kwnames == nullptr ? 0 : PyTuple_GET_SIZE(kwnames));
  if (simple && nargs > skip) {
    // SimpleQueue's put(obj) and get(), worded as CPython's builtins word it.
    PyErr_Format(PyExc_TypeError, skip == 0 ? "%s() takes no arguments (%zd given)" : "%s() takes exactly one argument (%zd given)",
                 fn, given);
    return false;
  }
  if (simple && given > skip) {
    PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fn, PyTuple_GET_ITEM(kwnames, 0));
    return false;
  }
  if (nargs > skip + 2) {
    PyErr_Format(PyExc_TypeError, "%s() takes at most %zd arguments (%zd given)", fn, skip + 2, given);
    return false;
  }
  if (nargs > skip) block = args[skip];
  if (nargs > skip + 1) timeout = args[skip + 1];
  if (kwnames == nullptr) return true;
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); ++i) {
    PyObject* key = PyTuple_GET_ITEM(kwnames, i);
    PyObject** slot = nullptr;
    if (PyUnicode_CompareWithASCIIString(key, "block") == 0) {
      slot = &block;
    } else if (PyUnicode_CompareWithASCIIString(key, "timeout") == 0) {
      slot = &timeout;
    } else {
      PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fn, key);
      return false;
    }
    if (*slot != nullptr) {
      PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%U'", fn, key);
      return false;
    }
    *slot = args[nargs + i];
  }
  return true;
}

ipc::deadline deadline_from(PyObject* timeout, bool& ok) {
  ok = true;
  if (timeout == nullptr || timeout == Py_None) return ipc::deadline::infinite();
  const double seconds = PyFloat_AsDouble(timeout);
  if (seconds == -1.0 && PyErr_Occurred()) {
    ok = false;
    return ipc::deadline::immediate();
  }
  if (std::isnan(seconds)) {
    PyErr_SetString(PyExc_ValueError, "timeout must not be NaN");
    ok = false;
    return ipc::deadline::immediate();
  }
  return ipc::deadline::from_seconds(seconds);
}

}  // namespace mphost::embed
