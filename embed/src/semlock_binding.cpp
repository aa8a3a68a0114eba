// `_multiprocessing`: the stdlib's accelerator module, provided by mphost
// over its robust shared-memory semaphores (ipc::semaphore). Same names and
// signatures as CPython's, so multiprocessing.synchronize and libraries that
// use SemLock directly (loky) work unchanged.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <limits>
#include <optional>
#include <string>

#include "mphost/embed/errors.hpp"
#include "mphost/embed/gil.hpp"
#include "mphost/embed/bindings.hpp"
#include "mphost/ipc/error.hpp"
#include "mphost/ipc/semaphore.hpp"

namespace py = pybind11;

namespace mphost::embed {
namespace {

// POSIX semaphore names start with '/'; segment names do not.
std::string segment_name(const std::string& name) { return name.empty() || name[0] != '/' ? name : name.substr(1); }

class semlock {
 public:
  semlock(int kind, long value, long maxvalue, const std::string& name, bool unlink)
      : sem_(create(kind, value, maxvalue, name)) {
    if (unlink) {
      ipc::semaphore::unlink(sem_.name());
    } else {
      name_ = name;
    }
  }

  semlock(ipc::semaphore sem, std::optional<std::string> name) : sem_(std::move(sem)), name_(std::move(name)) {}

  static std::unique_ptr<semlock> rebuild(const py::object& /*handle*/, int kind, long maxvalue,
                                          const std::optional<std::string>& name) {
    if (!name) {
      throw py::value_error("cannot rebuild a SemLock without a name: it was created for fork children only");
    }
    ipc::semaphore sem = ipc::semaphore::open(segment_name(*name));
    if (static_cast<int>(sem.kind()) != kind || static_cast<long>(sem.maxvalue()) != maxvalue) {
      throw py::value_error("SemLock " + *name + " does not match the pickled kind or maxvalue");
    }
    return std::make_unique<semlock>(std::move(sem), name);
  }

  bool acquire(bool block, const py::object& timeout) {
    ipc::deadline until = ipc::deadline::immediate();
    if (block && !timeout.is_none()) {
      const double seconds = timeout.cast<double>();
      if (std::isnan(seconds)) throw py::value_error("Invalid value NaN (not a number)");
      until = ipc::deadline::from_seconds(seconds < 0 ? 0 : seconds);
    } else if (block) {
      until = ipc::deadline::infinite();
    }
    // Uncontended: no GIL release at all.
    ipc::wait_result result = sem_.acquire(ipc::deadline::immediate());
    while ((block && result == ipc::wait_result::timed_out && !until.expired()) ||
           result == ipc::wait_result::interrupted) {
      if (result == ipc::wait_result::interrupted && PyErr_CheckSignals() != 0) throw py::error_already_set();
      py::gil_scoped_release release;
      result = sem_.acquire(until);
    }
    if (result == ipc::wait_result::owner_died) {
      recovered_ = true;
      warn_owner_died();
    }
    return ipc::acquired(result);
  }

  void release() {
    // not_owner -> AssertionError, released_too_many_times -> ValueError (errors.cpp).
    const std::error_code error = sem_.try_release();
    if (error) throw std::system_error(error);
  }

  std::uintptr_t handle() const { return reinterpret_cast<std::uintptr_t>(sem_.handle()); }
  int kind() const { return static_cast<int>(sem_.kind()); }
  long maxvalue() const { return sem_.maxvalue(); }
  const std::optional<std::string>& name() const { return name_; }
  long count() const { return sem_.count(); }
  bool is_mine() const { return sem_.is_mine(); }
  long value() const { return sem_.value(); }
  bool is_zero() const { return sem_.is_zero(); }
  void after_fork() { sem_.after_fork(); }
  bool recovered() const { return recovered_; }

 private:
  static ipc::semaphore create(int kind, long value, long maxvalue, const std::string& name) {
    if (kind != 0 && kind != 1) throw py::value_error("unrecognized kind");
    if (value < 0 || maxvalue <= 0 || maxvalue > static_cast<long>(ipc::semaphore::value_max) || value > maxvalue) {
      throw py::value_error("invalid value or maxvalue");
    }
    return ipc::semaphore::create(static_cast<ipc::semlock_kind>(kind), static_cast<std::uint32_t>(value),
                                  static_cast<std::uint32_t>(maxvalue), segment_name(name));
  }

  void warn_owner_died() {
    // The class is the shim's (a RuntimeWarning subclass), found at warning time.
    py::object category = py::module_::import("multiprocessing.synchronize").attr("AbandonedLockWarning");
    const std::string message = "a process died holding " + std::string(kind() == 0 ? "an RLock" : "a lock") +
                                " (" + name_.value_or("unnamed") +
                                "); this process recovered it, and the state it protected may be inconsistent";
    if (PyErr_WarnEx(category.ptr(), message.c_str(), 1) != 0) throw py::error_already_set();
  }

  ipc::semaphore sem_;
  std::optional<std::string> name_;
  bool recovered_ = false;
};

}  // namespace

void bind_multiprocessing(py::module_& m) {
  py::class_<semlock>(m, "SemLock", "Semaphore or recursive mutex in shared memory (mphost).")
      .def(py::init<int, long, long, const std::string&, bool>(), py::arg("kind"), py::arg("value"),
           py::arg("maxvalue"), py::arg("name"), py::arg("unlink"))
      .def_static("_rebuild", &semlock::rebuild)
      .def("acquire", &semlock::acquire, py::arg("block") = true, py::arg("timeout") = py::none(),
           "Acquire; with block=False or a timeout, return False if that fails.")
      .def("release", &semlock::release)
      .def("__enter__", [](semlock& self) { return self.acquire(true, py::none()); })
      .def("__exit__", [](semlock& self, const py::args&) { self.release(); })
      .def("_count", &semlock::count)
      .def("_is_mine", &semlock::is_mine)
      .def("_get_value", &semlock::value)
      .def("_is_zero", &semlock::is_zero)
      .def("_after_fork", &semlock::after_fork)
      .def_property_readonly("handle", &semlock::handle)
      .def_property_readonly("kind", &semlock::kind)
      .def_property_readonly("maxvalue", &semlock::maxvalue)
      .def_property_readonly("name", &semlock::name)
      .def_property_readonly("_recovered", &semlock::recovered,
                             "True once an acquire took this lock over from a process that died holding it.")
      .def_property_readonly_static("SEM_VALUE_MAX",
                                    [](const py::object&) { return static_cast<long>(ipc::semaphore::value_max); });

  m.def(
      "sem_unlink", [](const std::string& name) { ipc::semaphore::unlink(segment_name(name)); }, py::arg("name"),
      "Remove a named semaphore (FileNotFoundError if there is none).");
  py::dict flags;
  flags["HAVE_SEM_OPEN"] = 1;
  flags["HAVE_SEM_TIMEDWAIT"] = 1;
  m.attr("flags") = flags;
}

}  // namespace mphost::embed

PYBIND11_MODULE(_multiprocessing, m) {
  m.doc() = "mphost's implementation of the stdlib's _multiprocessing module.";
  mphost::embed::register_error_translation();
  mphost::embed::bind_multiprocessing(m);
}
