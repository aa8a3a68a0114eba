// `_multiprocessing._SemLockFront` (semlock.hpp): `with lock:` straight into
// the native SemLock held in the `_semlock` slot.
#include "mphost/embed/semlock.hpp"

namespace mphost::embed::semlock {
namespace {

struct front_object {
  PyObject_HEAD
  PyObject* semlock;  // set by the Python subclass; nullptr until then
};

PyObject* front_new(PyTypeObject* cls, PyObject*, PyObject*) { return cls->tp_alloc(cls, 0); }

void front_dealloc(PyObject* op) {
  PyTypeObject* cls = Py_TYPE(op);
  Py_CLEAR(reinterpret_cast<front_object*>(op)->semlock);
  cls->tp_free(op);
  Py_DECREF(cls);
}

PyObject* front_missing(PyObject* op) {
  PyErr_Format(PyExc_AttributeError, "'%.100s' object has no attribute '_semlock'", Py_TYPE(op)->tp_name);
  return nullptr;
}

PyObject* front_get_semlock(PyObject* op, void*) {
  PyObject* held = reinterpret_cast<front_object*>(op)->semlock;
  return held != nullptr ? Py_NewRef(held) : front_missing(op);
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
  PyObject* held = reinterpret_cast<front_object*>(op)->semlock;
  if (held == nullptr) return front_missing(op);
  if (Py_IS_TYPE(held, type)) [[likely]] return acquire(held, nullptr, 0, nullptr);
  return PyObject_CallMethod(held, "__enter__", nullptr);
}

PyObject* front_exit(PyObject* op, PyObject* const* args, Py_ssize_t nargs) {
  PyObject* held = reinterpret_cast<front_object*>(op)->semlock;
  if (held == nullptr) return front_missing(op);
  if (Py_IS_TYPE(held, type)) [[likely]] return release_now(held);
  PyObject* method = PyObject_GetAttrString(held, "__exit__");
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

}  // namespace

PyObject* make_front_type() { return PyType_FromSpec(&front_spec); }

}  // namespace mphost::embed::semlock
