// `_multiprocessing`: the stdlib's accelerator module, provided by mphost
// over its robust shared-memory semaphores (ipc::semaphore). Same names and
// signatures as CPython's, so multiprocessing.synchronize and libraries that
// use SemLock directly (loky, joblib) work unchanged.
//
// Written against the C API rather than pybind11: acquire and release are
// the hottest calls of the package (every Lock, every bounded queue slot),
// and a vectorcall method costs a fraction of a generic binding's dispatch.
//
// Two private helpers, beyond the stdlib's names, keep Python frames off the
// hottest paths of the shim:
//   _SemLockFront      a base class for multiprocessing.synchronize.SemLock:
//                      holds `_semlock` in a slot and implements __enter__
//                      and __exit__ natively, so `with lock:` calls straight
//                      into the semaphore.
//   _locked_property   the descriptor behind sharedctypes' synchronized
//                      attributes (Value.value, ...): `self.acquire()`, the
//                      attribute of `self._obj`, `self.release()` -- the
//                      stdlib's accessor, without its two Python frames.
#include <cmath>
#include <new>
#include <optional>
#include <string>

#include "mphost/embed/bindings.hpp"
#include "mphost/embed/errors.hpp"
#include "mphost/embed/python.hpp"
#include "mphost/ipc/error.hpp"
#include "mphost/ipc/semaphore.hpp"

namespace mphost::embed {
namespace {

struct semlock_object {
  PyObject_HEAD
  ipc::semaphore* sem;
  PyObject* name;  // str, or None once unlinked
  bool recovered;
};

// POSIX semaphore names start with '/'; segment names do not.
std::string segment_name(const char* name) { return name[0] == '/' ? std::string(name + 1) : std::string(name); }

// Runs `fn`, turning C++ errors into the Python exception errors.cpp chooses.
template <class Fn>
bool guarded(Fn&& fn) {
  try {
    fn();
    return true;
  } catch (const std::system_error& e) {
    set_python_error(e);
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return false;
}

PyObject* wrap(PyTypeObject* type, ipc::semaphore sem, PyObject* name) {
  auto* self = reinterpret_cast<semlock_object*>(type->tp_alloc(type, 0));
  if (self == nullptr) return nullptr;
  self->sem = new (std::nothrow) ipc::semaphore(std::move(sem));
  if (self->sem == nullptr) {
    Py_DECREF(self);
    return PyErr_NoMemory();
  }
  Py_INCREF(name);
  self->name = name;
  self->recovered = false;
  return reinterpret_cast<PyObject*>(self);
}

PyObject* semlock_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
  static const char* keywords[] = {"kind", "value", "maxvalue", "name", "unlink", nullptr};
  int kind = 0, unlink = 0;
  long value = 0, maxvalue = 0;
  const char* name = nullptr;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "illsp", const_cast<char**>(keywords), &kind, &value, &maxvalue, &name,
                                   &unlink)) {
    return nullptr;
  }
  if (kind != 0 && kind != 1) {
    PyErr_SetString(PyExc_ValueError, "unrecognized kind");
    return nullptr;
  }
  if (value < 0 || maxvalue <= 0 || maxvalue > static_cast<long>(ipc::semaphore::value_max) || value > maxvalue) {
    PyErr_SetString(PyExc_ValueError, "invalid value or maxvalue");
    return nullptr;
  }
  std::optional<ipc::semaphore> sem;
  if (!guarded([&] {
        sem.emplace(ipc::semaphore::create(static_cast<ipc::semlock_kind>(kind), static_cast<std::uint32_t>(value),
                                           static_cast<std::uint32_t>(maxvalue), segment_name(name)));
        if (unlink) ipc::semaphore::unlink(sem->name());
      })) {
    return nullptr;
  }
  PyObject* py_name = unlink ? Py_NewRef(Py_None) : PyUnicode_FromString(name);
  if (py_name == nullptr) return nullptr;
  PyObject* self = wrap(type, std::move(*sem), py_name);
  Py_DECREF(py_name);
  return self;
}

void semlock_dealloc(PyObject* op) {
  auto* self = reinterpret_cast<semlock_object*>(op);
  PyTypeObject* type = Py_TYPE(op);
  delete self->sem;
  Py_XDECREF(self->name);
  type->tp_free(op);
  Py_DECREF(type);
}

// SemLock._rebuild(handle, kind, maxvalue, name): reopen by name in another process.
PyObject* semlock_rebuild(PyObject* cls, PyObject* args) {
  PyObject* handle;
  int kind;
  long maxvalue;
  PyObject* name;
  if (!PyArg_ParseTuple(args, "OilO", &handle, &kind, &maxvalue, &name)) return nullptr;
  if (name == Py_None) {
    PyErr_SetString(PyExc_ValueError,
                    "cannot rebuild a SemLock without a name: it was created for fork children only");
    return nullptr;
  }
  const char* text = PyUnicode_AsUTF8(name);
  if (text == nullptr) return nullptr;
  std::optional<ipc::semaphore> sem;
  if (!guarded([&] { sem.emplace(ipc::semaphore::open(segment_name(text))); })) return nullptr;
  if (static_cast<int>(sem->kind()) != kind || static_cast<long>(sem->maxvalue()) != maxvalue) {
    PyErr_Format(PyExc_ValueError, "SemLock %U does not match the pickled kind or maxvalue", name);
    return nullptr;
  }
  return wrap(reinterpret_cast<PyTypeObject*>(cls), std::move(*sem), name);
}

bool warn_owner_died(semlock_object* self) {
  PyObject* module = PyImport_ImportModule("multiprocessing.synchronize");
  PyObject* category = module != nullptr ? PyObject_GetAttrString(module, "AbandonedLockWarning") : nullptr;
  Py_XDECREF(module);
  if (category == nullptr) return false;
  const bool rlock = self->sem->kind() == ipc::semlock_kind::recursive_mutex;
  PyObject* message = PyUnicode_FromFormat(
      "a process died holding %s (%S); this process recovered it, and the state it protected may be "
      "inconsistent",
      rlock ? "an RLock" : "a lock", self->name == Py_None ? Py_None : self->name);
  const int rc = message != nullptr ? PyErr_WarnEx(category, PyUnicode_AsUTF8(message), 1) : -1;
  Py_XDECREF(message);
  Py_DECREF(category);
  return rc == 0;
}

// acquire(block=True, timeout=None) -> bool, everything but the case the
// fast path below settles.
[[gnu::noinline]] PyObject* semlock_acquire_slow(semlock_object* self, PyObject* const* args, Py_ssize_t nargs,
                                                 PyObject* kwnames) {
  PyObject* block_obj = nargs > 0 ? args[0] : nullptr;
  PyObject* timeout_obj = nargs > 1 ? args[1] : nullptr;
  if (nargs > 2) {
    PyErr_SetString(PyExc_TypeError, "acquire() takes at most 2 arguments");
    return nullptr;
  }
  if (kwnames != nullptr) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); ++i) {
      PyObject* key = PyTuple_GET_ITEM(kwnames, i);
      if (PyUnicode_CompareWithASCIIString(key, "block") == 0) {
        block_obj = args[nargs + i];
      } else if (PyUnicode_CompareWithASCIIString(key, "timeout") == 0) {
        timeout_obj = args[nargs + i];
      } else {
        PyErr_Format(PyExc_TypeError, "acquire() got an unexpected keyword argument '%U'", key);
        return nullptr;
      }
    }
  }
  int block = 1;
  if (block_obj != nullptr && (block = PyObject_IsTrue(block_obj)) < 0) return nullptr;

  ipc::wait_result result = self->sem->acquire(ipc::deadline::immediate());
  if (result == ipc::wait_result::timed_out && block) {
    ipc::deadline until = ipc::deadline::infinite();
    if (timeout_obj != nullptr && timeout_obj != Py_None) {
      const double seconds = PyFloat_AsDouble(timeout_obj);
      if (seconds == -1.0 && PyErr_Occurred()) return nullptr;
      if (std::isnan(seconds)) {
        PyErr_SetString(PyExc_ValueError, "Invalid value NaN (not a number)");
        return nullptr;
      }
      until = ipc::deadline::from_seconds(seconds < 0 ? 0 : seconds);
    }
    // Only now, about to wait, is the GIL given up.
    do {
      if (until.expired()) break;
      Py_BEGIN_ALLOW_THREADS
      result = self->sem->acquire(until);
      Py_END_ALLOW_THREADS
      // Ctrl-C: run the handlers; go on waiting unless they raised.
      if (result == ipc::wait_result::interrupted && PyErr_CheckSignals() != 0) return nullptr;
    } while (result == ipc::wait_result::interrupted);
  }
  if (result == ipc::wait_result::owner_died) {
    self->recovered = true;
    if (!warn_owner_died(self)) {
      // The warning was turned into an error: give the lock back, raise it.
      (void)self->sem->try_release();
      return nullptr;
    }
  }
  return PyBool_FromLong(ipc::acquired(result));
}

// The hot call of the package: acquire() with no arguments on a free lock
// (or a lock this thread holds recursively) is one attempt and no parsing.
PyObject* semlock_acquire(PyObject* op, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  auto* self = reinterpret_cast<semlock_object*>(op);
  if (nargs == 0 && kwnames == nullptr && self->sem->try_acquire()) [[likely]] Py_RETURN_TRUE;
  return semlock_acquire_slow(self, args, nargs, kwnames);
}

[[gnu::noinline]] PyObject* raise_release_error(mphost::errc error) {
  // not_owner -> AssertionError, released_too_many_times -> ValueError (errors.cpp).
  set_python_error(std::system_error(make_error_code(error)));
  return nullptr;
}

PyObject* semlock_release_now(PyObject* op) {
  const mphost::errc error = reinterpret_cast<semlock_object*>(op)->sem->release_status();
  if (error != mphost::errc{}) [[unlikely]] return raise_release_error(error);
  Py_RETURN_NONE;
}

// release() is METH_FASTCALL rather than METH_NOARGS: the interpreter
// specializes calls of fast-call builtins into a direct C call.
PyObject* semlock_release(PyObject* op, PyObject* const*, Py_ssize_t nargs) {
  if (nargs != 0) [[unlikely]] {
    PyErr_Format(PyExc_TypeError, "SemLock.release() takes no arguments (%zd given)", nargs);
    return nullptr;
  }
  return semlock_release_now(op);
}

PyObject* semlock_enter(PyObject* op, PyObject*) { return semlock_acquire(op, nullptr, 0, nullptr); }

PyObject* semlock_exit(PyObject* op, PyObject* const*, Py_ssize_t nargs) {
  if (nargs > 3) [[unlikely]] {
    PyErr_Format(PyExc_TypeError, "__exit__ expected at most 3 arguments, got %zd", nargs);
    return nullptr;
  }
  return semlock_release_now(op);
}

PyObject* semlock_count(PyObject* op, PyObject*) {
  return PyLong_FromUnsignedLong(reinterpret_cast<semlock_object*>(op)->sem->count());
}
PyObject* semlock_is_mine(PyObject* op, PyObject*) {
  return PyBool_FromLong(reinterpret_cast<semlock_object*>(op)->sem->is_mine());
}
PyObject* semlock_get_value(PyObject* op, PyObject*) {
  return PyLong_FromUnsignedLong(reinterpret_cast<semlock_object*>(op)->sem->value());
}
PyObject* semlock_is_zero(PyObject* op, PyObject*) {
  return PyBool_FromLong(reinterpret_cast<semlock_object*>(op)->sem->is_zero());
}
PyObject* semlock_after_fork(PyObject* op, PyObject*) {
  reinterpret_cast<semlock_object*>(op)->sem->after_fork();
  Py_RETURN_NONE;
}

PyObject* get_handle(PyObject* op, void*) {
  return PyLong_FromVoidPtr(const_cast<void*>(reinterpret_cast<semlock_object*>(op)->sem->handle()));
}
PyObject* get_kind(PyObject* op, void*) {
  return PyLong_FromLong(static_cast<int>(reinterpret_cast<semlock_object*>(op)->sem->kind()));
}
PyObject* get_maxvalue(PyObject* op, void*) {
  return PyLong_FromUnsignedLong(reinterpret_cast<semlock_object*>(op)->sem->maxvalue());
}
PyObject* get_name(PyObject* op, void*) { return Py_NewRef(reinterpret_cast<semlock_object*>(op)->name); }
PyObject* get_recovered(PyObject* op, void*) {
  return PyBool_FromLong(reinterpret_cast<semlock_object*>(op)->recovered);
}

PyMethodDef semlock_methods[] = {
    {"acquire", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(semlock_acquire)),
     METH_FASTCALL | METH_KEYWORDS, "Acquire; with block=False or a timeout, return False if that fails."},
    {"release", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(semlock_release)), METH_FASTCALL,
     "Release."},
    {"__enter__", semlock_enter, METH_NOARGS, "Acquire."},
    {"__exit__", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(semlock_exit)), METH_FASTCALL,
     "Release."},
    {"_count", semlock_count, METH_NOARGS, "Acquisitions held by this thread (process for semaphores)."},
    {"_is_mine", semlock_is_mine, METH_NOARGS, "Whether the calling thread holds it."},
    {"_get_value", semlock_get_value, METH_NOARGS, "The current value."},
    {"_is_zero", semlock_is_zero, METH_NOARGS, "Whether the value is zero."},
    {"_after_fork", semlock_after_fork, METH_NOARGS, "Forget this process's acquisitions (in a forked child)."},
    {"_rebuild", semlock_rebuild, METH_VARARGS | METH_CLASS, "Reopen a named SemLock in another process."},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef semlock_getset[] = {
    {"handle", get_handle, nullptr, "Address of the shared state in this process.", nullptr},
    {"kind", get_kind, nullptr, "0: recursive mutex, 1: semaphore.", nullptr},
    {"maxvalue", get_maxvalue, nullptr, "Largest value.", nullptr},
    {"name", get_name, nullptr, "Name by which other processes open it; None once unlinked.", nullptr},
    {"_recovered", get_recovered, nullptr,
     "True once an acquire took it over from a process that died holding it.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyType_Slot semlock_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(semlock_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(semlock_dealloc)},
    {Py_tp_methods, semlock_methods},
    {Py_tp_getset, semlock_getset},
    {Py_tp_doc, const_cast<char*>("Semaphore or recursive mutex in shared memory (mphost).")},
    {0, nullptr},
};

PyType_Spec semlock_spec = {
    "_multiprocessing.SemLock",
    sizeof(semlock_object),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    semlock_slots,
};

PyObject* sem_unlink(PyObject*, PyObject* arg) {
  const char* name = PyUnicode_AsUTF8(arg);
  if (name == nullptr) return nullptr;
  if (!guarded([&] { ipc::semaphore::unlink(segment_name(name)); })) return nullptr;
  Py_RETURN_NONE;
}

// ---- _SemLockFront -------------------------------------------------------

struct front_object {
  PyObject_HEAD
  PyObject* semlock;  // set by the Python subclass; nullptr until then
};

PyTypeObject* semlock_type = nullptr;  // _multiprocessing.SemLock, for the fast path's type test

PyObject* front_new(PyTypeObject* type, PyObject*, PyObject*) { return type->tp_alloc(type, 0); }

void front_dealloc(PyObject* op) {
  PyTypeObject* type = Py_TYPE(op);
  Py_CLEAR(reinterpret_cast<front_object*>(op)->semlock);
  type->tp_free(op);
  Py_DECREF(type);
}

PyObject* front_missing(PyObject* op) {
  PyErr_Format(PyExc_AttributeError, "'%.100s' object has no attribute '_semlock'", Py_TYPE(op)->tp_name);
  return nullptr;
}

PyObject* front_get_semlock(PyObject* op, void*) {
  PyObject* semlock = reinterpret_cast<front_object*>(op)->semlock;
  return semlock != nullptr ? Py_NewRef(semlock) : front_missing(op);
}

int front_set_semlock(PyObject* op, PyObject* value, void*) {
  auto* self = reinterpret_cast<front_object*>(op);
  if (value == nullptr && self->semlock == nullptr) {
    front_missing(op);
    return -1;
  }
  Py_XSETREF(self->semlock, Py_XNewRef(value));
  return 0;
}

PyObject* front_enter(PyObject* op, PyObject*) {
  PyObject* semlock = reinterpret_cast<front_object*>(op)->semlock;
  if (semlock == nullptr) return front_missing(op);
  if (Py_IS_TYPE(semlock, semlock_type)) [[likely]] return semlock_acquire(semlock, nullptr, 0, nullptr);
  return PyObject_CallMethod(semlock, "__enter__", nullptr);
}

PyObject* front_exit(PyObject* op, PyObject* const* args, Py_ssize_t nargs) {
  PyObject* semlock = reinterpret_cast<front_object*>(op)->semlock;
  if (semlock == nullptr) return front_missing(op);
  if (Py_IS_TYPE(semlock, semlock_type)) [[likely]] return semlock_release_now(semlock);
  PyObject* method = PyObject_GetAttrString(semlock, "__exit__");
  if (method == nullptr) return nullptr;
  PyObject* result = PyObject_Vectorcall(method, args, static_cast<std::size_t>(nargs), nullptr);
  Py_DECREF(method);
  return result;
}

PyMethodDef front_methods[] = {
    {"__enter__", front_enter, METH_NOARGS, "Acquire the SemLock."},
    {"__exit__", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(front_exit)), METH_FASTCALL,
     "Release the SemLock."},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef front_getset[] = {
    {"_semlock", front_get_semlock, front_set_semlock, "The native SemLock.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyType_Slot front_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(front_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(front_dealloc)},
    {Py_tp_methods, front_methods},
    {Py_tp_getset, front_getset},
    {Py_tp_doc, const_cast<char*>("Base of multiprocessing.synchronize.SemLock: `with` on the native SemLock.")},
    {0, nullptr},
};

PyType_Spec front_spec = {
    "_multiprocessing._SemLockFront",
    sizeof(front_object),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    front_slots,
};

// ---- _locked_property ----------------------------------------------------

struct locked_property_object {
  PyObject_HEAD
  PyObject* name;  // str: the attribute of `_obj`
};

PyObject* str_acquire = nullptr;
PyObject* str_release = nullptr;
PyObject* str_obj = nullptr;

PyObject* locked_property_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
  PyObject* name;
  if (kwds != nullptr && PyDict_GET_SIZE(kwds) != 0) {
    PyErr_SetString(PyExc_TypeError, "_locked_property() takes no keyword arguments");
    return nullptr;
  }
  if (!PyArg_ParseTuple(args, "U:_locked_property", &name)) return nullptr;
  auto* self = reinterpret_cast<locked_property_object*>(type->tp_alloc(type, 0));
  if (self == nullptr) return nullptr;
  self->name = Py_NewRef(name);
  PyUnicode_InternInPlace(&self->name);
  return reinterpret_cast<PyObject*>(self);
}

void locked_property_dealloc(PyObject* op) {
  PyTypeObject* type = Py_TYPE(op);
  Py_CLEAR(reinterpret_cast<locked_property_object*>(op)->name);
  type->tp_free(op);
  Py_DECREF(type);
}

// The native SemLock behind `bound`, if it is that SemLock's method `fn`.
semlock_object* bound_semlock(PyObject* bound, void (*fn)()) {
  if (!PyCFunction_Check(bound) ||
      reinterpret_cast<void (*)()>(PyCFunction_GET_FUNCTION(bound)) != fn) {
    return nullptr;
  }
  PyObject* self = PyCFunction_GET_SELF(bound);
  return self != nullptr && Py_IS_TYPE(self, semlock_type) ? reinterpret_cast<semlock_object*>(self) : nullptr;
}

// instance.<method>() -- looked up on the instance as the stdlib's accessor
// does. When it is the plain acquire() or release() of a native SemLock (the
// wrapper's own lock), the cheapest path of that call is taken directly.
bool call_method(PyObject* instance, PyObject* method) {
  PyObject* bound = PyObject_GetAttr(instance, method);
  if (bound == nullptr) return false;
  if (method == str_acquire) {
    if (semlock_object* lock = bound_semlock(bound, reinterpret_cast<void (*)()>(semlock_acquire));
        lock != nullptr && lock->sem->try_acquire()) {
      Py_DECREF(bound);
      return true;
    }
  } else if (semlock_object* lock = bound_semlock(bound, reinterpret_cast<void (*)()>(semlock_release));
             lock != nullptr) {
    Py_DECREF(bound);
    const mphost::errc error = lock->sem->release_status();
    if (error == mphost::errc{}) return true;
    raise_release_error(error);
    return false;
  }
  // Anything else, or an acquire that must wait: an ordinary call.
  PyObject* result = PyObject_CallNoArgs(bound);
  Py_DECREF(bound);
  Py_XDECREF(result);
  return result != nullptr;
}

// The finally clause: release, with an earlier error (result == nullptr)
// kept, or chained under the release's own error as Python would.
PyObject* release_after(PyObject* instance, PyObject* result) {
  PyObject *type = nullptr, *value = nullptr, *traceback = nullptr;
  if (result == nullptr) PyErr_Fetch(&type, &value, &traceback);
  if (!call_method(instance, str_release)) {
    Py_XDECREF(result);
    if (type != nullptr) _PyErr_ChainExceptions(type, value, traceback);
    return nullptr;
  }
  if (result == nullptr) PyErr_Restore(type, value, traceback);
  return result;
}

PyObject* locked_property_get(PyObject* op, PyObject* instance, PyObject*) {
  if (instance == nullptr || instance == Py_None) return Py_NewRef(op);
  if (!call_method(instance, str_acquire)) return nullptr;
  PyObject* result = nullptr;
  if (PyObject* obj = PyObject_GetAttr(instance, str_obj); obj != nullptr) {
    result = PyObject_GetAttr(obj, reinterpret_cast<locked_property_object*>(op)->name);
    Py_DECREF(obj);
  }
  return release_after(instance, result);
}

int locked_property_set(PyObject* op, PyObject* instance, PyObject* value) {
  auto* self = reinterpret_cast<locked_property_object*>(op);
  if (value == nullptr) {
    PyErr_Format(PyExc_AttributeError, "property '%U' of '%.100s' object has no deleter", self->name,
                 Py_TYPE(instance)->tp_name);
    return -1;
  }
  if (!call_method(instance, str_acquire)) return -1;
  PyObject* done = nullptr;
  if (PyObject* obj = PyObject_GetAttr(instance, str_obj); obj != nullptr) {
    if (PyObject_SetAttr(obj, self->name, value) == 0) done = Py_NewRef(Py_None);
    Py_DECREF(obj);
  }
  done = release_after(instance, done);
  if (done == nullptr) return -1;
  Py_DECREF(done);
  return 0;
}

PyObject* locked_property_repr(PyObject* op) {
  return PyUnicode_FromFormat("<locked property %R>", reinterpret_cast<locked_property_object*>(op)->name);
}

PyType_Slot locked_property_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(locked_property_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(locked_property_dealloc)},
    {Py_tp_descr_get, reinterpret_cast<void*>(locked_property_get)},
    {Py_tp_descr_set, reinterpret_cast<void*>(locked_property_set)},
    {Py_tp_repr, reinterpret_cast<void*>(locked_property_repr)},
    {Py_tp_doc, const_cast<char*>("_locked_property(name): attribute `name` of `self._obj`, read and written "
                                  "between self.acquire() and self.release().")},
    {0, nullptr},
};

PyType_Spec locked_property_spec = {
    "_multiprocessing._locked_property",
    sizeof(locked_property_object),
    0,
    Py_TPFLAGS_DEFAULT,
    locked_property_slots,
};

PyMethodDef module_methods[] = {
    {"sem_unlink", sem_unlink, METH_O, "Remove a named semaphore (FileNotFoundError if there is none)."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_multiprocessing", "mphost's implementation of the stdlib's _multiprocessing module.",
    -1, module_methods, nullptr, nullptr, nullptr, nullptr,
};

}  // namespace
}  // namespace mphost::embed

extern "C" PyObject* PyInit__multiprocessing() {
  using namespace mphost::embed;
  // Made anew at every initialization (never released): an interpreter
  // started again in the same process must not use the previous one's objects.
  str_acquire = PyUnicode_InternFromString("acquire");
  str_release = PyUnicode_InternFromString("release");
  str_obj = PyUnicode_InternFromString("_obj");
  if (str_acquire == nullptr || str_release == nullptr || str_obj == nullptr) return nullptr;
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
  PyObject* type = PyType_FromSpec(&semlock_spec);
  PyObject* front = PyType_FromSpec(&front_spec);
  PyObject* locked_property = PyType_FromSpec(&locked_property_spec);
  PyObject* flags = Py_BuildValue("{s:i,s:i}", "HAVE_SEM_OPEN", 1, "HAVE_SEM_TIMEDWAIT", 1);
  PyObject* value_max = PyLong_FromUnsignedLong(mphost::ipc::semaphore::value_max);
  const bool ok = type != nullptr && front != nullptr && locked_property != nullptr && flags != nullptr &&
                  value_max != nullptr && PyObject_SetAttrString(type, "SEM_VALUE_MAX", value_max) == 0 &&
                  PyModule_AddObjectRef(module, "SemLock", type) == 0 &&
                  PyModule_AddObjectRef(module, "_SemLockFront", front) == 0 &&
                  PyModule_AddObjectRef(module, "_locked_property", locked_property) == 0 &&
                  PyModule_AddObjectRef(module, "flags", flags) == 0;
  if (ok) {
    // The fast paths' exact-type test; kept like the strings above.
    semlock_type = reinterpret_cast<PyTypeObject*>(Py_NewRef(type));
  }
  Py_XDECREF(type);
  Py_XDECREF(front);
  Py_XDECREF(locked_property);
  Py_XDECREF(flags);
  Py_XDECREF(value_max);
  if (!ok) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
