// `_multiprocessing.SemLock` (semlock.hpp): a semaphore or recursive mutex
// in shared memory, as CPython's SemLock.
#include <new>
#include <optional>
#include <string>

#include "mphost/embed/blocking_call.hpp"
#include "mphost/embed/errors.hpp"
#include "mphost/embed/semlock.hpp"

namespace mphost::embed::semlock {

PyTypeObject* type = nullptr;

namespace {

// POSIX semaphore names start with '/'; segment names do not.
std::string segment_name(const char* name) { return name[0] == '/' ? std::string(name + 1) : std::string(name); }

PyObject* wrap(PyTypeObject* cls, ipc::semaphore sem, PyObject* name) {
  auto* self = reinterpret_cast<object*>(cls->tp_alloc(cls, 0));
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

PyObject* semlock_new(PyTypeObject* cls, PyObject* args, PyObject* kwds) {
  // CPython's five arguments, then mphost's own, by keyword only: `holder`
  // (a semaphore of maxvalue 1 records its holder and is recovered when it
  // dies, as a Lock; False for BoundedSemaphore(1)) and `undo` (a dead
  // process's net acquisitions are given back; ipc/semaphore.hpp).
  static const char* keywords[] = {"kind", "value", "maxvalue", "name", "unlink", "holder", "undo", nullptr};
  int kind = 0, unlink = 0, holder = 1, undo = 0;
  long value = 0, maxvalue = 0;
  const char* name = nullptr;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "illsp|$pp", const_cast<char**>(keywords), &kind, &value, &maxvalue,
                                   &name, &unlink, &holder, &undo)) {
    return nullptr;
  }
  if (kind != 0 && kind != 1) {
    PyErr_SetString(PyExc_ValueError, "unrecognized kind");
    return nullptr;
  }
  if (undo && kind != 1) {
    PyErr_SetString(PyExc_ValueError, "undo applies to semaphores only (an RLock is recovered by itself)");
    return nullptr;
  }
  if (value < 0 || maxvalue <= 0 || maxvalue > static_cast<long>(ipc::semaphore::value_max) || value > maxvalue) {
    PyErr_SetString(PyExc_ValueError, "invalid value or maxvalue");
    return nullptr;
  }
  std::optional<ipc::semaphore> sem;
  if (!errors_to_python([&] {
        sem.emplace(ipc::semaphore::create(static_cast<ipc::semlock_kind>(kind), static_cast<std::uint32_t>(value),
                                           static_cast<std::uint32_t>(maxvalue), segment_name(name),
                                           ipc::semaphore_options{holder != 0, undo != 0}));
        if (unlink) ipc::semaphore::unlink(sem->name());
      })) {
    return nullptr;
  }
  PyObject* py_name = unlink ? Py_NewRef(Py_None) : PyUnicode_FromString(name);
  if (py_name == nullptr) return nullptr;
  PyObject* self = wrap(cls, std::move(*sem), py_name);
  Py_DECREF(py_name);
  return self;
}

void semlock_dealloc(PyObject* op) {
  auto* self = reinterpret_cast<object*>(op);
  PyTypeObject* cls = Py_TYPE(op);
  delete self->sem;
  Py_XDECREF(self->name);
  cls->tp_free(op);
  Py_DECREF(cls);
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
  if (!errors_to_python([&] { sem.emplace(ipc::semaphore::open(segment_name(text))); })) return nullptr;
  if (static_cast<int>(sem->kind()) != kind || static_cast<long>(sem->maxvalue()) != maxvalue) {
    PyErr_Format(PyExc_ValueError, "SemLock %U does not match the pickled kind or maxvalue", name);
    return nullptr;
  }
  return wrap(reinterpret_cast<PyTypeObject*>(cls), std::move(*sem), name);
}

bool warn_owner_died(object* self) {
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

// acquire()'s (block, timeout), positional or by keyword.
bool parse_acquire(PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames, PyObject*& block_obj,
                   PyObject*& timeout_obj) {
  block_obj = nargs > 0 ? args[0] : nullptr;
  timeout_obj = nargs > 1 ? args[1] : nullptr;
  if (nargs > 2) {
    PyErr_SetString(PyExc_TypeError, "acquire() takes at most 2 arguments");
    return false;
  }
  if (kwnames == nullptr) return true;
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); ++i) {
    PyObject* key = PyTuple_GET_ITEM(kwnames, i);
    if (PyUnicode_CompareWithASCIIString(key, "block") == 0) {
      block_obj = args[nargs + i];
    } else if (PyUnicode_CompareWithASCIIString(key, "timeout") == 0) {
      timeout_obj = args[nargs + i];
    } else {
      PyErr_Format(PyExc_TypeError, "acquire() got an unexpected keyword argument '%U'", key);
      return false;
    }
  }
  return true;
}

}  // namespace

[[gnu::noinline]] PyObject* acquire_slow(object* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject *block_obj, *timeout_obj;
  if (!parse_acquire(args, nargs, kwnames, block_obj, timeout_obj)) return nullptr;
  int block = 1;
  if (block_obj != nullptr && (block = PyObject_IsTrue(block_obj)) < 0) return nullptr;
  // With undo, the first acquisition of a process claims its slot in the
  // table; a full table is an error, not a wait.
  if (self->sem->undo() && !errors_to_python([&] { self->sem->reserve_undo(); })) return nullptr;
  // The timeout is read only to wait (never without blocking); a negative
  // one is zero.
  const auto attempt = [sem = self->sem](const ipc::deadline& d) { return sem->acquire(d); };
  const std::optional<ipc::wait_result> result =
      block ? blocking_call(python_timeout{timeout_obj, "Invalid value NaN (not a number)"}, attempt)
            : blocking_call(ipc::deadline::immediate(), attempt);
  if (!result) return nullptr;
  if (*result == ipc::wait_result::owner_died) {
    self->recovered = true;
    if (!warn_owner_died(self)) {
      // The warning was turned into an error: give the lock back, raise it.
      (void)self->sem->try_release();
      return nullptr;
    }
  }
  return PyBool_FromLong(ipc::acquired(*result));
}

[[gnu::noinline]] PyObject* raise_release_error(mphost::errc error) {
  set_python_error(std::system_error(make_error_code(error)));
  return nullptr;
}

PyObject* release(PyObject* op, PyObject* const*, Py_ssize_t nargs) {
  if (nargs != 0) [[unlikely]] {
    PyErr_Format(PyExc_TypeError, "SemLock.release() takes no arguments (%zd given)", nargs);
    return nullptr;
  }
  return release_now(op);
}

namespace {

PyObject* semlock_enter(PyObject* op, PyObject*) { return acquire(op, nullptr, 0, nullptr); }

PyObject* semlock_exit(PyObject* op, PyObject* const*, Py_ssize_t nargs) {
  if (nargs > 3) [[unlikely]] {
    PyErr_Format(PyExc_TypeError, "__exit__ expected at most 3 arguments, got %zd", nargs);
    return nullptr;
  }
  return release_now(op);
}

ipc::semaphore& sem_of(PyObject* op) { return *reinterpret_cast<object*>(op)->sem; }

PyObject* semlock_count(PyObject* op, PyObject*) { return PyLong_FromUnsignedLong(sem_of(op).count()); }
PyObject* semlock_is_mine(PyObject* op, PyObject*) { return PyBool_FromLong(sem_of(op).is_mine()); }
PyObject* semlock_get_value(PyObject* op, PyObject*) { return PyLong_FromUnsignedLong(sem_of(op).value()); }
PyObject* semlock_is_zero(PyObject* op, PyObject*) { return PyBool_FromLong(sem_of(op).is_zero()); }
PyObject* semlock_after_fork(PyObject* op, PyObject*) {
  sem_of(op).after_fork();
  Py_RETURN_NONE;
}

PyObject* get_handle(PyObject* op, void*) { return PyLong_FromVoidPtr(const_cast<void*>(sem_of(op).handle())); }
PyObject* get_kind(PyObject* op, void*) { return PyLong_FromLong(static_cast<int>(sem_of(op).kind())); }
PyObject* get_maxvalue(PyObject* op, void*) { return PyLong_FromUnsignedLong(sem_of(op).maxvalue()); }
PyObject* get_name(PyObject* op, void*) { return Py_NewRef(reinterpret_cast<object*>(op)->name); }
PyObject* get_recovered(PyObject* op, void*) { return PyBool_FromLong(reinterpret_cast<object*>(op)->recovered); }
PyObject* get_undo(PyObject* op, void*) { return PyBool_FromLong(sem_of(op).undo()); }

template <class Fn>
PyCFunction as_method(Fn* fn) {
  return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(fn));
}

PyMethodDef semlock_methods[] = {
    {"acquire", as_method(acquire), METH_FASTCALL | METH_KEYWORDS,
     "Acquire; with block=False or a timeout, return False if that fails."},
    {"release", as_method(release), METH_FASTCALL, "Release."},
    {"__enter__", semlock_enter, METH_NOARGS, "Acquire."},
    {"__exit__", as_method(semlock_exit), METH_FASTCALL, "Release."},
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
    {"undo", get_undo, nullptr, "True when a dead process's net acquisitions are given back.", nullptr},
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
    sizeof(object),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    semlock_slots,
};

}  // namespace

PyObject* make_semlock_type() {
  PyObject* cls = PyType_FromSpec(&semlock_spec);
  if (cls == nullptr) return nullptr;
  PyObject* value_max = PyLong_FromUnsignedLong(ipc::semaphore::value_max);
  if (value_max == nullptr || PyObject_SetAttrString(cls, "SEM_VALUE_MAX", value_max) != 0) {
    Py_XDECREF(value_max);
    Py_DECREF(cls);
    return nullptr;
  }
  Py_DECREF(value_max);
  return cls;
}

PyObject* sem_unlink(PyObject*, PyObject* arg) {
  const char* name = PyUnicode_AsUTF8(arg);
  if (name == nullptr) return nullptr;
  if (!errors_to_python([&] { ipc::semaphore::unlink(segment_name(name)); })) return nullptr;
  Py_RETURN_NONE;
}

}  // namespace mphost::embed::semlock
