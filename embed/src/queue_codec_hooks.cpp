// `_mphost._pickle_builtin` and `_mphost._unpickle_builtin`
// (queue_port.hpp): the queue port's builtin pickle codec alone, for tests.
#include <span>
#include <string>

#include "mphost/embed/builtin_pickle.hpp"
#include "mphost/embed/queue_port.hpp"

namespace mphost::embed {
namespace {

// Test hooks: the builtin codec alone.
PyObject* pickle_builtin(PyObject*, PyObject* obj) {
  std::string out;
  if (!builtin_pickle::encode(obj, out)) Py_RETURN_NONE;
  return PyBytes_FromStringAndSize(out.data(), static_cast<Py_ssize_t>(out.size()));
}

PyObject* unpickle_builtin(PyObject*, PyObject* data) {
  Py_buffer view;
  if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) != 0) return nullptr;
  PyObject* obj = builtin_pickle::decode(std::span(static_cast<const std::byte*>(view.buf), static_cast<std::size_t>(view.len)));
  PyBuffer_Release(&view);
  if (obj == nullptr && !PyErr_Occurred()) {
    PyErr_SetString(PyExc_ValueError, "not a pickle the builtin codec reads");
  }
  return obj;
}

PyMethodDef hook_methods[] = {
    {"_pickle_builtin", pickle_builtin, METH_O,
     "The builtin codec's pickle of obj (what pickle.dumps(obj, 4) gives), or None outside its graphs."},
    {"_unpickle_builtin", unpickle_builtin, METH_O,
     "The builtin codec's reading of a pickle; ValueError where it defers to pickle.loads."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

bool add_codec_hooks(PyObject* module) {
  for (PyMethodDef* def = hook_methods; def->ml_name != nullptr; ++def) {
    PyObject* fn = PyCFunction_New(def, nullptr);
    if (fn == nullptr) return false;
    const int added = PyModule_AddObjectRef(module, def->ml_name, fn);
    Py_DECREF(fn);
    if (added < 0) return false;
  }
  return true;
}

}  // namespace mphost::embed
