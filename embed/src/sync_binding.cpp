// `_mphost.SharedEvent`, `SharedCondition` and `SharedBarrier`: the
// shared-memory event, condition and barrier of ipc/ for the shim's
// multiprocessing.synchronize.
//
// Every wait runs through blocking_call (blocking_call.hpp): the event's
// first look holds the GIL (a set flag needs no wait), the condition's and
// the barrier's core waits start without it (see their methods). A signal
// that interrupts a wait runs the Python handlers; a quiet one resumes the
// wait with the time left; if one raises, the wait is given up cleanly (a
// condition waiter withdraws, passing on a notification it got; a barrier
// party breaks the barrier, since the others would otherwise wait for it)
// and the exception propagates. Core errors map through errors.cpp.
//
// The event and the barrier are written against the C API with fast-call
// methods: a ping-pong through two events or a Barrier(2) cycle is a handful
// of these calls, and a generic binding's dispatch would cost more than the
// shared-memory work. The condition, whose calls wrap a lock's release and
// acquire in Python anyway, uses pybind11.
//
// Names: each object lives in a segment of its own with an unguessable name;
// `unlink=True` removes the name at once (objects shared by fork only), and
// then `name` is None. `sync_unlink(name)` removes a name later.
#include <pybind11/pybind11.h>

#include <new>
#include <optional>
#include <string>

#include "mphost/embed/bindings.hpp"
#include "mphost/embed/blocking_call.hpp"
#include "mphost/embed/errors.hpp"
#include "mphost/ipc/barrier.hpp"
#include "mphost/ipc/condition.hpp"
#include "mphost/ipc/error.hpp"
#include "mphost/ipc/event.hpp"

namespace py = pybind11;

namespace mphost::embed {
namespace {

// ---- shared helpers ----------------------------------------------------

// The ValueError for a NaN timeout, as the semaphore-based waits of the
// stdlib word it.
constexpr const char* nan_message = "Invalid value NaN (not a number)";

PyObject* raise_broken() {
  set_python_error(std::system_error(make_error_code(errc::broken_barrier)));
  return nullptr;
}

// Parses (timeout=None[, action=None]) of a fast call with keywords.
bool parse_wait_args(const char* what, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames,
                     PyObject** timeout, PyObject** action) {
  const Py_ssize_t most = action != nullptr ? 2 : 1;
  if (nargs > most) {
    PyErr_Format(PyExc_TypeError, "%s() takes at most %zd arguments (%zd given)", what, most, nargs);
    return false;
  }
  if (nargs > 0) *timeout = args[0];
  if (nargs > 1) *action = args[1];
  if (kwnames == nullptr) return true;
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); ++i) {
    PyObject* key = PyTuple_GET_ITEM(kwnames, i);
    if (PyUnicode_CompareWithASCIIString(key, "timeout") == 0) {
      *timeout = args[nargs + i];
    } else if (action != nullptr && PyUnicode_CompareWithASCIIString(key, "action") == 0) {
      *action = args[nargs + i];
    } else {
      PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", what, key);
      return false;
    }
  }
  return true;
}

bool no_args(const char* what, Py_ssize_t nargs) {
  if (nargs == 0) [[likely]] return true;
  PyErr_Format(PyExc_TypeError, "%s() takes no arguments (%zd given)", what, nargs);
  return false;
}

PyObject* name_of(const std::string& name, bool unlinked) {
  return unlinked ? Py_NewRef(Py_None) : PyUnicode_FromString(name.c_str());
}

// The native object behind a Python one, made by tp_new or open().
template <class Native>
struct native_object {
  PyObject_HEAD
  Native* native;
  bool unlinked;
};

template <class Native>
PyObject* wrap(PyTypeObject* type, Native&& native, bool unlinked) {
  auto* self = reinterpret_cast<native_object<Native>*>(type->tp_alloc(type, 0));
  if (self == nullptr) return nullptr;
  self->native = new (std::nothrow) Native(std::move(native));
  if (self->native == nullptr) {
    Py_DECREF(self);
    return PyErr_NoMemory();
  }
  self->unlinked = unlinked;
  return reinterpret_cast<PyObject*>(self);
}

template <class Native>
void native_dealloc(PyObject* op) {
  PyTypeObject* type = Py_TYPE(op);
  delete reinterpret_cast<native_object<Native>*>(op)->native;
  type->tp_free(op);
  Py_DECREF(type);
}

template <class Native>
Native& native_of(PyObject* op) {
  return *reinterpret_cast<native_object<Native>*>(op)->native;
}

template <class Native>
PyObject* native_name(PyObject* op, void*) {
  auto* self = reinterpret_cast<native_object<Native>*>(op);
  return name_of(self->native->name(), self->unlinked);
}

// Class method open(name): the object another process made.
template <class Native>
PyObject* native_open(PyObject* cls, PyObject* arg) {
  const char* name = PyUnicode_AsUTF8(arg);
  if (name == nullptr) return nullptr;
  std::optional<Native> opened;
  if (!errors_to_python([&] { opened.emplace(Native::open(name)); })) return nullptr;
  return wrap(reinterpret_cast<PyTypeObject*>(cls), std::move(*opened), false);
}

// ---- SharedEvent ---------------------------------------------------------

using event_object = native_object<ipc::event>;

PyObject* event_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
  static const char* keywords[] = {"unlink", nullptr};
  int unlink = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "|p", const_cast<char**>(keywords), &unlink)) return nullptr;
  std::optional<ipc::event> made;
  if (!errors_to_python([&] { made.emplace(ipc::event::create()); })) return nullptr;
  const bool unlinked = unlink && ipc::event::unlink(made->name());
  return wrap(type, std::move(*made), unlinked);
}

PyObject* event_is_set(PyObject* op, PyObject* const*, Py_ssize_t nargs) {
  if (!no_args("is_set", nargs)) return nullptr;
  return PyBool_FromLong(native_of<ipc::event>(op).is_set());
}

PyObject* event_set(PyObject* op, PyObject* const*, Py_ssize_t nargs) {
  if (!no_args("set", nargs)) return nullptr;
  native_of<ipc::event>(op).set();
  Py_RETURN_NONE;
}

PyObject* event_clear(PyObject* op, PyObject* const*, Py_ssize_t nargs) {
  if (!no_args("clear", nargs)) return nullptr;
  native_of<ipc::event>(op).clear();
  Py_RETURN_NONE;
}

// The first look holds the GIL (a set flag costs no GIL switch) and the
// timeout is read only when the flag is down. `since` is taken once, so a
// flag raised and lowered again during the wait still counts.
PyObject* event_wait(PyObject* op, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* timeout = nullptr;
  if (!parse_wait_args("wait", args, nargs, kwnames, &timeout, nullptr)) return nullptr;
  ipc::event& ev = native_of<ipc::event>(op);
  const std::uint32_t since = ev.since();
  const std::optional<ipc::wait_result> r = blocking_call(
      python_timeout{timeout, nan_message}, [&](const ipc::deadline& d) noexcept { return ev.wait(since, d); });
  if (!r) return nullptr;
  return PyBool_FromLong(*r == ipc::wait_result::ok);
}

#define MPHOST_FAST(fn) reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(fn))

PyMethodDef event_methods[] = {
    {"is_set", MPHOST_FAST(event_is_set), METH_FASTCALL, "Whether the flag is up."},
    {"set", MPHOST_FAST(event_set), METH_FASTCALL, "Raise the flag; wake every waiter."},
    {"clear", MPHOST_FAST(event_clear), METH_FASTCALL, "Lower the flag."},
    {"wait", MPHOST_FAST(event_wait), METH_FASTCALL | METH_KEYWORDS,
     "wait(timeout=None): True once the flag is up or went up during the wait; False on timeout."},
    {"open", reinterpret_cast<PyCFunction>(native_open<ipc::event>), METH_O | METH_CLASS,
     "The SharedEvent of that name, made by another process."},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef event_getset[] = {
    {"name", native_name<ipc::event>, nullptr, "The name other processes open it by; None once unlinked.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyType_Slot event_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(event_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(native_dealloc<ipc::event>)},
    {Py_tp_methods, event_methods},
    {Py_tp_getset, event_getset},
    {Py_tp_doc, const_cast<char*>("SharedEvent(unlink=False): a flag in shared memory (ipc::event).")},
    {0, nullptr},
};

PyType_Spec event_spec = {"_mphost.SharedEvent", sizeof(event_object), 0, Py_TPFLAGS_DEFAULT, event_slots};

// ---- SharedBarrier -------------------------------------------------------

using barrier_object = native_object<ipc::barrier>;

PyObject* barrier_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
  static const char* keywords[] = {"parties", "unlink", nullptr};
  long parties = 0;
  int unlink = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "l|p", const_cast<char**>(keywords), &parties, &unlink)) return nullptr;
  if (parties < 1 || parties > static_cast<long>(ipc::barrier::max_parties)) {
    PyErr_Format(PyExc_ValueError, "parties must be between 1 and %lu", static_cast<unsigned long>(ipc::barrier::max_parties));
    return nullptr;
  }
  std::optional<ipc::barrier> made;
  if (!errors_to_python([&] { made.emplace(ipc::barrier::create(static_cast<std::uint32_t>(parties))); })) return nullptr;
  const bool unlinked = unlink && ipc::barrier::unlink(made->name());
  return wrap(type, std::move(*made), unlinked);
}

// A barrier outcome in blocking_call's terms: interrupted and timed_out
// keep their meaning (blocking_call retries the one, stops at the other);
// passed and broken end the wait.
ipc::wait_result as_wait_result(ipc::barrier_result r) noexcept {
  switch (r) {
    case ipc::barrier_result::passed: return ipc::wait_result::ok;
    case ipc::barrier_result::timed_out: return ipc::wait_result::timed_out;
    case ipc::barrier_result::interrupted: return ipc::wait_result::interrupted;
    case ipc::barrier_result::broken: break;
  }
  return ipc::wait_result::closed;
}

// wait(timeout=None, action=None) -> the arrival index. The last party
// calls action() before it releases the others; if that raises, the
// barrier breaks and the exception propagates.
//
// Both core steps run without the GIL from their first attempt: enter()
// has no deadline (it waits out a draining cycle, which may need this
// process's other threads), and an await_release() that finds its deadline
// passed breaks the barrier, so it cannot be tried against an immediate one.
PyObject* barrier_wait(PyObject* op, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  ipc::barrier& bar = native_of<ipc::barrier>(op);
  PyObject* timeout = nullptr;
  PyObject* action = Py_None;
  ipc::deadline until = ipc::deadline::infinite();
  if (!parse_wait_args("wait", args, nargs, kwnames, &timeout, &action) ||
      !timeout_deadline(timeout, until, nan_message)) {
    return nullptr;
  }
  ipc::barrier::entry e{};
  const auto entering = [&](const ipc::deadline&) noexcept {
    e = bar.enter();
    return as_wait_result(e.result);
  };
  if (!blocking_call(ipc::deadline::infinite(), entering, first_attempt::released)) return nullptr;
  if (e.result != ipc::barrier_result::passed) return raise_broken();
  if (e.index + 1 == bar.parties()) {
    if (action != Py_None) {
      PyObject* done = PyObject_CallNoArgs(action);
      if (done == nullptr) {
        bar.abandon(e.index);
        return nullptr;
      }
      Py_DECREF(done);
    }
    bar.release(e.index);
    return PyLong_FromUnsignedLong(e.index);
  }
  ipc::barrier_result released = ipc::barrier_result::interrupted;
  const auto awaiting = [&](const ipc::deadline& d) noexcept {
    released = bar.await_release(e.index, d);
    return as_wait_result(released);
  };
  if (!blocking_call(until, awaiting, first_attempt::released)) {
    bar.abandon(e.index);  // the others would otherwise wait for this party
    return nullptr;
  }
  bar.leave(e.index);
  if (released != ipc::barrier_result::passed) return raise_broken();
  return PyLong_FromUnsignedLong(e.index);
}

PyObject* barrier_abort(PyObject* op, PyObject* const*, Py_ssize_t nargs) {
  if (!no_args("abort", nargs)) return nullptr;
  native_of<ipc::barrier>(op).abort();
  Py_RETURN_NONE;
}

PyObject* barrier_reset(PyObject* op, PyObject* const*, Py_ssize_t nargs) {
  if (!no_args("reset", nargs)) return nullptr;
  native_of<ipc::barrier>(op).reset();
  Py_RETURN_NONE;
}

PyObject* barrier_parties(PyObject* op, void*) { return PyLong_FromUnsignedLong(native_of<ipc::barrier>(op).parties()); }
PyObject* barrier_n_waiting(PyObject* op, void*) {
  return PyLong_FromUnsignedLong(native_of<ipc::barrier>(op).n_waiting());
}
PyObject* barrier_broken(PyObject* op, void*) { return PyBool_FromLong(native_of<ipc::barrier>(op).is_broken()); }
PyObject* barrier_state(PyObject* op, void*) {
  return PyLong_FromLong(static_cast<long>(native_of<ipc::barrier>(op).current_state()));
}
PyObject* barrier_count(PyObject* op, void*) { return PyLong_FromUnsignedLong(native_of<ipc::barrier>(op).count()); }

PyMethodDef barrier_methods[] = {
    {"wait", MPHOST_FAST(barrier_wait), METH_FASTCALL | METH_KEYWORDS,
     "wait(timeout=None, action=None): the arrival index; raises threading.BrokenBarrierError."},
    {"abort", MPHOST_FAST(barrier_abort), METH_FASTCALL, "Break the barrier."},
    {"reset", MPHOST_FAST(barrier_reset), METH_FASTCALL, "Back to filling; waiters leave broken."},
    {"open", reinterpret_cast<PyCFunction>(native_open<ipc::barrier>), METH_O | METH_CLASS,
     "The SharedBarrier of that name, made by another process."},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef barrier_getset[] = {
    {"name", native_name<ipc::barrier>, nullptr, "The name other processes open it by; None once unlinked.", nullptr},
    {"parties", barrier_parties, nullptr, "Parties needed to pass.", nullptr},
    {"n_waiting", barrier_n_waiting, nullptr, "Parties waiting in the filling cycle.", nullptr},
    {"broken", barrier_broken, nullptr, "Whether the barrier is broken.", nullptr},
    {"state", barrier_state, nullptr, "0 filling, 1 draining, -1 resetting, -2 broken (threading's).", nullptr},
    {"count", barrier_count, nullptr, "Parties in the barrier, whatever its state.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyType_Slot barrier_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(barrier_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(native_dealloc<ipc::barrier>)},
    {Py_tp_methods, barrier_methods},
    {Py_tp_getset, barrier_getset},
    {Py_tp_doc, const_cast<char*>("SharedBarrier(parties, unlink=False): a barrier in shared memory (ipc::barrier).")},
    {0, nullptr},
};

PyType_Spec barrier_spec = {"_mphost.SharedBarrier", sizeof(barrier_object), 0, Py_TPFLAGS_DEFAULT, barrier_slots};

#undef MPHOST_FAST

// ---- SharedCondition (pybind11) ------------------------------------------

struct condition_waiter {
  ipc::condition::waiter w;
};

struct condition_face {
  ipc::condition cond;
  bool unlinked = false;

  // The first attempt runs without the GIL: a core wait that finds its
  // deadline passed withdraws the waiter, so it cannot be tried against an
  // immediate one. A waiter already notified needs no wait at all.
  bool wait(condition_waiter& waiter, const py::object& timeout) {
    ipc::deadline until = ipc::deadline::infinite();
    if (!timeout_deadline(timeout.ptr(), until, nan_message)) {
      cond.withdraw(waiter.w);
      throw py::error_already_set();
    }
    if (!waiter.w.active) return true;
    const std::optional<ipc::wait_result> r = blocking_call(
        until, [&](const ipc::deadline& d) noexcept { return cond.wait(waiter.w, d); }, first_attempt::released);
    if (!r) {
      cond.withdraw(waiter.w);  // passes on a notification that came meanwhile
      throw py::error_already_set();
    }
    return *r == ipc::wait_result::ok;
  }
};

void add_type(py::module_& m, PyType_Spec& spec, const char* name) {
  PyObject* type = PyType_FromSpec(&spec);
  if (type == nullptr || PyModule_AddObjectRef(m.ptr(), name, type) != 0) {
    Py_XDECREF(type);
    throw py::error_already_set();
  }
  Py_DECREF(type);
}

}  // namespace

void bind_sync(py::module_& m) {
  add_type(m, event_spec, "SharedEvent");
  add_type(m, barrier_spec, "SharedBarrier");

  py::class_<condition_waiter>(m, "ConditionWaiter", "A waiter's place in a SharedCondition.")
      .def_property_readonly("active", [](const condition_waiter& w) { return w.w.active; });

  py::class_<condition_face>(m, "SharedCondition", "A condition variable in shared memory (ipc::condition).")
      .def(py::init([](bool unlink) {
             condition_face face{ipc::condition::create()};
             if (unlink) face.unlinked = ipc::condition::unlink(face.cond.name());
             return face;
           }),
           py::arg("unlink") = false)
      .def_static("open", [](const std::string& name) { return condition_face{ipc::condition::open(name)}; })
      .def_property_readonly("name",
                             [](const condition_face& f) {
                               return py::reinterpret_steal<py::object>(name_of(f.cond.name(), f.unlinked));
                             })
      .def("enlist", [](condition_face& f) { return condition_waiter{f.cond.enlist()}; },
           "Become a waiter; call with the lock held, before letting it go.")
      .def("wait", &condition_face::wait, py::arg("waiter"), py::arg("timeout") = py::none(),
           "True when notified, False on timeout (the waiter has left either way).")
      .def("withdraw", [](condition_face& f, condition_waiter& w) { f.cond.withdraw(w.w); })
      .def("notify", [](condition_face& f, std::uint32_t n) { return f.cond.notify(n); }, py::arg("n") = 1)
      .def("notify_all", [](condition_face& f) { return f.cond.notify_all(); })
      .def_property_readonly("waiting", [](const condition_face& f) { return f.cond.waiting(); });

  m.def("sync_unlink", [](const std::string& name) { return ipc::segment::remove(name); },
        "Remove the name of a SharedEvent, SharedCondition or SharedBarrier; False if it was gone.");
}

}  // namespace mphost::embed
