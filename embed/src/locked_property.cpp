// `_multiprocessing._locked_property` (semlock.hpp): the synchronized
// attribute of sharedctypes' wrappers, read and written between
// self.acquire() and self.release().
#include "mphost/embed/semlock.hpp"

namespace mphost::embed::semlock {
namespace {

struct locked_property_object {
  PyObject_HEAD
  PyObject* name;  // str: the attribute of `_obj`
};

// Interned when the type is made (every initialization of the module).
PyObject* str_acquire = nullptr;
PyObject* str_release = nullptr;
PyObject* str_obj = nullptr;

PyObject* locked_property_new(PyTypeObject* cls, PyObject* args, PyObject* kwds) {
  PyObject* name;
  if (kwds != nullptr && PyDict_GET_SIZE(kwds) != 0) {
    PyErr_SetString(PyExc_TypeError, "_locked_property() takes no keyword arguments");
    return nullptr;
  }
  if (!PyArg_ParseTuple(args, "U:_locked_property", &name)) return nullptr;
  auto* self = reinterpret_cast<locked_property_object*>(cls->tp_alloc(cls, 0));
  if (self == nullptr) return nullptr;
  self->name = Py_NewRef(name);
  PyUnicode_InternInPlace(&self->name);
  return reinterpret_cast<PyObject*>(self);
}

void locked_property_dealloc(PyObject* op) {
  PyTypeObject* cls = Py_TYPE(op);
  Py_CLEAR(reinterpret_cast<locked_property_object*>(op)->name);
  cls->tp_free(op);
  Py_DECREF(cls);
}

// The native SemLock behind `bound`, if it is that SemLock's method `fn`.
object* bound_semlock(PyObject* bound, void (*fn)()) {
  if (!PyCFunction_Check(bound) || reinterpret_cast<void (*)()>(PyCFunction_GET_FUNCTION(bound)) != fn) {
    return nullptr;
  }
  PyObject* self = PyCFunction_GET_SELF(bound);
  return self != nullptr && Py_IS_TYPE(self, type) ? reinterpret_cast<object*>(self) : nullptr;
}

// instance.<method>() -- looked up on the instance as the stdlib's accessor
// does. When it is the plain acquire() or release() of a native SemLock (the
// wrapper's own lock), the cheapest path of that call is taken directly.
bool call_method(PyObject* instance, PyObject* method) {
  PyObject* bound = PyObject_GetAttr(instance, method);
  if (bound == nullptr) return false;
  if (method == str_acquire) {
    if (object* lock = bound_semlock(bound, reinterpret_cast<void (*)()>(acquire));
        lock != nullptr && lock->sem->try_acquire()) {
      Py_DECREF(bound);
      return true;
    }
  } else if (object* lock = bound_semlock(bound, reinterpret_cast<void (*)()>(release)); lock != nullptr) {
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
  PyObject *exc_type = nullptr, *value = nullptr, *traceback = nullptr;
  if (result == nullptr) PyErr_Fetch(&exc_type, &value, &traceback);
  if (!call_method(instance, str_release)) {
    Py_XDECREF(result);
    if (exc_type != nullptr) _PyErr_ChainExceptions(exc_type, value, traceback);
    return nullptr;
  }
  if (result == nullptr) PyErr_Restore(exc_type, value, traceback);
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

}  // namespace

PyObject* make_locked_property_type() {
  // Made anew at every initialization (never released): an interpreter
  // started again in the same process must not use the previous one's objects.
  str_acquire = PyUnicode_InternFromString("acquire");
  str_release = PyUnicode_InternFromString("release");
  str_obj = PyUnicode_InternFromString("_obj");
  if (str_acquire == nullptr || str_release == nullptr || str_obj == nullptr) return nullptr;
  return PyType_FromSpec(&locked_property_spec);
}

}  // namespace mphost::embed::semlock
