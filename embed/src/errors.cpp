#include "mphost/embed/errors.hpp"

#include <pybind11/pybind11.h>

#include <cerrno>

#include "mphost/ipc/error.hpp"

namespace py = pybind11;

namespace mphost::embed {
namespace {

void set_os_error(int err, const std::string& what) {
  // Calling OSError(errno, strerror) picks the subclass (FileNotFoundError,
  // ...); raising the instance with its own type keeps that choice visible
  // before normalization too.
  PyObject* exc = PyObject_CallFunction(PyExc_OSError, "is", err, what.c_str());
  if (exc == nullptr) return;
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc)), exc);
  Py_DECREF(exc);
}

void set_multiprocessing_error(const char* name, const std::string& message) {
  PyObject* context = PyImport_ImportModule("multiprocessing.context");
  PyObject* type = context != nullptr ? PyObject_GetAttrString(context, name) : nullptr;
  Py_XDECREF(context);
  if (type == nullptr) return;  // the import error stays set
  PyErr_SetString(type, message.c_str());
  Py_DECREF(type);
}

// threading's own exception classes (BrokenBarrierError), raised bare as
// threading raises them.
void set_threading_error(const char* name) {
  PyObject* threading = PyImport_ImportModule("threading");
  PyObject* type = threading != nullptr ? PyObject_GetAttrString(threading, name) : nullptr;
  Py_XDECREF(threading);
  if (type == nullptr) return;
  PyErr_SetNone(type);
  Py_DECREF(type);
}

}  // namespace

void set_python_error(const std::system_error& error) {
  const std::error_code& code = error.code();
  const std::string what = error.what();
  if (code.category() != mphost_category()) {
    set_os_error(code.value(), what);
    return;
  }
  switch (static_cast<errc>(code.value())) {
    case errc::peer_closed: PyErr_SetString(PyExc_EOFError, what.c_str()); return;
    case errc::buffer_too_short: set_multiprocessing_error("BufferTooShort", what); return;
    case errc::auth_failed: set_multiprocessing_error("AuthenticationError", what); return;
    case errc::handle_closed: PyErr_SetString(PyExc_OSError, "handle is closed"); return;
    case errc::released_too_many_times:
    case errc::message_too_large: PyErr_SetString(PyExc_ValueError, what.c_str()); return;
    case errc::corrupt_frame: set_os_error(EBADMSG, what); return;
    case errc::worker_lost: set_multiprocessing_error("ProcessError", what); return;
    case errc::not_owner:
      PyErr_SetString(PyExc_AssertionError, "attempt to release recursive lock not owned by thread");
      return;
    case errc::broken_barrier: set_threading_error("BrokenBarrierError"); return;
  }
  PyErr_SetString(PyExc_RuntimeError, what.c_str());
}

void register_error_translation() {
  py::register_exception_translator([](std::exception_ptr pending) {
    try {
      if (pending) std::rethrow_exception(pending);
    } catch (const std::system_error& e) {
      set_python_error(e);
    }
  });
}

}  // namespace mphost::embed
