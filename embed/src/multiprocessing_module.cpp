// The `_multiprocessing` module (semlock.hpp): its types, flags and
// sem_unlink, registered before the interpreter starts.
#include "mphost/embed/bindings.hpp"
#include "mphost/embed/semlock.hpp"

namespace mphost::embed::semlock {
namespace {

PyMethodDef module_methods[] = {
    {"sem_unlink", sem_unlink, METH_O, "Remove a named semaphore (FileNotFoundError if there is none)."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_multiprocessing", "mphost's implementation of the stdlib's _multiprocessing module.",
    -1, module_methods, nullptr, nullptr, nullptr, nullptr,
};

}  // namespace
}  // namespace mphost::embed::semlock

extern "C" PyObject* PyInit__multiprocessing() {
  using namespace mphost::embed::semlock;
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
  PyObject* semlock = make_semlock_type();
  PyObject* front = make_front_type();
  PyObject* locked_property = make_locked_property_type();
  PyObject* flags = Py_BuildValue("{s:i,s:i}", "HAVE_SEM_OPEN", 1, "HAVE_SEM_TIMEDWAIT", 1);
  const bool ok = semlock != nullptr && front != nullptr && locked_property != nullptr && flags != nullptr &&
                  PyModule_AddObjectRef(module, "SemLock", semlock) == 0 &&
                  PyModule_AddObjectRef(module, "_SemLockFront", front) == 0 &&
                  PyModule_AddObjectRef(module, "_locked_property", locked_property) == 0 &&
                  PyModule_AddObjectRef(module, "flags", flags) == 0;
  if (ok) {
    // The fast paths' exact-type test; kept for the process's life, as the
    // strings of _locked_property are.
    type = reinterpret_cast<PyTypeObject*>(Py_NewRef(semlock));
  }
  Py_XDECREF(semlock);
  Py_XDECREF(front);
  Py_XDECREF(locked_property);
  Py_XDECREF(flags);
  if (!ok) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
