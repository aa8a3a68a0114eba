// The builtin codec's decoder (builtin_pickle.hpp): the core's pickle reader
// (runtime/pickle_reader.hpp) with a builder that makes the builtin objects
// pickle.loads would; anything the builder does not make (a global, a call,
// a container of another type under APPEND or SETITEM) is left to
// pickle.loads.
#include <cstdint>
#include <span>
#include <string_view>

#include "mphost/embed/builtin_pickle.hpp"
#include "mphost/runtime/pickle_reader.hpp"

namespace mphost::embed::builtin_pickle {
namespace {

// New references in, new references out; nullptr is failure (a Python error
// may be set: decode() clears it).
struct object_builder {
  using value = PyObject*;

  static bool ok(PyObject* v) noexcept { return v != nullptr; }
  static PyObject* none() noexcept { return Py_NewRef(Py_None); }
  static PyObject* boolean(bool v) noexcept { return Py_NewRef(v ? Py_True : Py_False); }
  static PyObject* integer(std::int64_t v) { return PyLong_FromLongLong(v); }
  static PyObject* big_integer(std::span<const unsigned char> le) { return _PyLong_FromByteArray(le.data(), le.size(), 1, 1); }
  static PyObject* real(double v) { return PyFloat_FromDouble(v); }
  static PyObject* text(std::string_view s) {
    return PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "surrogatepass");
  }
  static PyObject* binary(std::span<const std::byte> b) {
    return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(b.data()), static_cast<Py_ssize_t>(b.size()));
  }
  static PyObject* tuple(std::span<PyObject*> items) {
    PyObject* t = PyTuple_New(static_cast<Py_ssize_t>(items.size()));
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (t == nullptr) {
        Py_DECREF(items[i]);
      } else {
        PyTuple_SET_ITEM(t, static_cast<Py_ssize_t>(i), items[i]);
      }
    }
    return t;
  }
  static PyObject* list() { return PyList_New(0); }
  static PyObject* dict() { return PyDict_New(); }
  static bool extend(PyObject* list, std::span<PyObject*> items) {
    bool done = PyList_CheckExact(list);
    for (PyObject* item : items) {
      done = done && PyList_Append(list, item) == 0;
      Py_DECREF(item);
    }
    return done;
  }
  static bool set_items(PyObject* dict, std::span<PyObject*> pairs) {
    bool done = PyDict_CheckExact(dict);
    for (std::size_t i = 0; i < pairs.size(); i += 2) {
      done = done && PyDict_SetItem(dict, pairs[i], pairs[i + 1]) == 0;
      Py_DECREF(pairs[i]);
      Py_DECREF(pairs[i + 1]);
    }
    return done;
  }
  static PyObject* global_of(PyObject*, PyObject*) noexcept { return nullptr; }
  static PyObject* call(PyObject* callable, PyObject* args) noexcept {
    Py_DECREF(callable);
    Py_DECREF(args);
    return nullptr;
  }
  static PyObject* share(PyObject* v) noexcept { return Py_NewRef(v); }
  static void drop(PyObject* v) noexcept { Py_DECREF(v); }
};

using object_reader = runtime::pickle::reader<object_builder>;

}  // namespace

PyObject* decode(std::span<const std::byte> data) {
  // One reader per thread keeps its stacks' capacity; a decode started while
  // it is busy (from a finalizer the garbage collector runs mid-decode) uses
  // a reader of its own.
  thread_local object_builder builder;
  thread_local object_reader shared(builder);
  thread_local bool busy = false;
  PyObject* result = nullptr;
  bool done;
  if (!busy) {
    busy = true;
    done = shared.read(data, result);
    busy = false;
  } else {
    object_reader own(builder);
    done = own.read(data, result);
  }
  if (!done) {
    PyErr_Clear();
    return nullptr;
  }
  return result;
}

}  // namespace mphost::embed::builtin_pickle
