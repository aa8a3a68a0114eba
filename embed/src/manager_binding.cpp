// `_mphost.ManagerDispatch`, the server side of a manager's channel links
// (runtime/manager_dispatch.hpp), and the client's two frame helpers.
//
//   ManagerDispatch(answer, encode, loads, failure)
//       answer(ident or None, name, args, kwds) -> (tag, payload), the
//           stdlib's reply: the only Python a request runs (the target
//           method is called there);
//       encode(tag, payload) -> bytes, the whole reply frame, for payloads
//           the builtin codec does not take (it pickles with the shim's
//           reducers, and answers '#UNSERIALIZABLE' when that fails);
//       loads(buffer) -> the arguments the builtin codec could not read;
//       failure(exc) -> str, the '#TRACEBACK' text for an exception raised
//           outside the method (arguments that do not unpickle...).
//     .open_link() -> (requests name, ticket, replies name, ticket)
//     .serve_here(ready): a new link served on the calling thread until it
//           ends, after ready(offer) passed the offer to the client; the GIL
//           is released but for each answer, as on a link thread
//     .live_links(), .stop(grace_seconds) -> links still running,
//     .forget(): for a forked child, which must not touch the threads'
//           state (the dispatcher is leaked there).
//   manager_request(ident, name, args, kwds, dump) -> bytes, a request
//       frame; `dump(obj)` pickles arguments the builtin codec does not take
//       (bytes, or a list of chunks).
//   manager_reply(data, loads) -> (tag, payload), from a reply frame.
//
// Link threads hold a Python thread state of their own for their whole
// life and take the GIL only inside answer(): to decode the arguments,
// run `answer`, encode the result. The callables are held for the life of
// the process (one dispatcher per manager server): a link thread may be the
// last to let go of the host, without the GIL.
#include <pybind11/pybind11.h>

#include <cxxabi.h>

#include <chrono>
#include <memory>
#include <string>

#include "mphost/embed/bindings.hpp"
#include "mphost/embed/builtin_pickle.hpp"
#include "mphost/embed/errors.hpp"
#include "mphost/embed/gil.hpp"
#include "mphost/embed/python.hpp"
#include "mphost/runtime/manager_dispatch.hpp"

namespace py = pybind11;

namespace mphost::embed {
namespace {

using runtime::reply_tag;

constexpr int tag_count = 5;

// The stdlib's reply tags, indexed by reply_tag ('#RETURN' ... '#PROXY').
PyObject* const* tag_names() {
  static PyObject* names[tag_count] = {
      PyUnicode_InternFromString("#RETURN"), PyUnicode_InternFromString("#ERROR"),
      PyUnicode_InternFromString("#TRACEBACK"), PyUnicode_InternFromString("#UNSERIALIZABLE"),
      PyUnicode_InternFromString("#PROXY")};
  return names;
}

// reply_tag of a tag string, or -1.
int tag_code(PyObject* tag) {
  PyObject* const* names = tag_names();
  for (int i = 0; i < tag_count; ++i) {
    if (tag == names[i]) return i;
  }
  if (!PyUnicode_Check(tag)) return -1;
  for (int i = 0; i < tag_count; ++i) {
    if (PyUnicode_Compare(tag, names[i]) == 0) return i;
  }
  PyErr_Clear();
  return -1;
}

std::span<const std::byte> span_of(const Py_buffer& view) {
  return {static_cast<const std::byte*>(view.buf), static_cast<std::size_t>(view.len)};
}

// A memoryview over `bytes` (kept alive by the caller) for a Python loads.
PyObject* view_of(std::span<const std::byte> bytes) {
  return PyMemoryView_FromMemory(const_cast<char*>(reinterpret_cast<const char*>(bytes.data())),
                                 static_cast<Py_ssize_t>(bytes.size()), PyBUF_READ);
}

// The object pickled in `bytes`: the builtin codec, else loads(view).
PyObject* unpickle(std::span<const std::byte> bytes, PyObject* loads) {
  if (PyObject* quick = builtin_pickle::decode(bytes)) return quick;
  PyObject* view = view_of(bytes);
  if (view == nullptr) return nullptr;
  PyObject* result = PyObject_CallOneArg(loads, view);
  Py_DECREF(view);
  return result;
}

// Appends a bytes object, or each chunk of a list of them, to `out`.
bool append_pickle(PyObject* data, std::string& out) {
  if (PyBytes_Check(data)) {
    out.append(PyBytes_AS_STRING(data), static_cast<std::size_t>(PyBytes_GET_SIZE(data)));
    return true;
  }
  if (!PyList_Check(data)) {
    PyErr_SetString(PyExc_TypeError, "a pickle must be bytes or a list of chunks");
    return false;
  }
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(data); ++i) {
    Py_buffer view;
    if (PyObject_GetBuffer(PyList_GET_ITEM(data, i), &view, PyBUF_C_CONTIGUOUS) != 0) return false;
    out.append(static_cast<const char*>(view.buf), static_cast<std::size_t>(view.len));
    PyBuffer_Release(&view);
  }
  return true;
}

// The Python side of the link threads.
class python_host final : public runtime::manager_host {
 public:
  python_host(py::object answer, py::object encode, py::object loads, py::object failure)
      : answer_(answer.release().ptr()), encode_(encode.release().ptr()), loads_(loads.release().ptr()),
        failure_(failure.release().ptr()) {}

  void thread_started() override {
    own_.gil = PyGILState_Ensure();
    own_.saved = PyEval_SaveThread();
  }

  void thread_ending() override {
    PyEval_RestoreThread(own_.saved);
    PyGILState_Release(own_.gil);
  }

  // A Python thread that serves a link itself (serve_here) gives the GIL
  // up for the loop, and answer() takes it as a link thread does.
  static void release_for_serving() { own_.saved = PyEval_SaveThread(); }
  static void take_back_after_serving() { PyEval_RestoreThread(own_.saved); }

  void answer(const runtime::manager_request& request, std::string& reply) override {
    const holding gil;
    if (!answer_with_gil(request, reply)) fail(reply);
  }

  void bad_request(std::span<const std::byte> frame, std::string& reply) override {
    const holding gil;
    PyErr_Format(PyExc_ValueError, "a manager request frame of %zd bytes that is not one", frame.size());
    fail(reply);
  }

 private:
  struct thread_own {
    PyGILState_STATE gil{};
    PyThreadState* saved = nullptr;
  };
  static thread_local thread_own own_;

  // The GIL for one request (taking it may end the thread at exit).
  struct holding {
    holding() { PyEval_RestoreThread(own_.saved); }
    ~holding() noexcept(false) { own_.saved = PyEval_SaveThread(); }
  };

  bool answer_with_gil(const runtime::manager_request& request, std::string& reply) {
    PyObject* args = nullptr;
    PyObject* kwds = nullptr;
    if (!arguments(request, args, kwds)) {
      Py_XDECREF(args);
      Py_XDECREF(kwds);
      return false;
    }
    PyObject* ident = (request.flags & runtime::request_flags::server_function)
                          ? Py_NewRef(Py_None)
                          : PyUnicode_DecodeUTF8(request.ident.data(), static_cast<Py_ssize_t>(request.ident.size()),
                                                 "surrogateescape");
    PyObject* name =
        PyUnicode_DecodeUTF8(request.method.data(), static_cast<Py_ssize_t>(request.method.size()), "surrogateescape");
    PyObject* result = nullptr;
    if (ident != nullptr && name != nullptr) {
      PyObject* call[] = {ident, name, args, kwds};
      result = PyObject_Vectorcall(answer_, call, 4, nullptr);
    }
    Py_XDECREF(ident);
    Py_XDECREF(name);
    Py_DECREF(args);
    Py_DECREF(kwds);
    if (result == nullptr) return false;
    const bool done = encode_reply(result, reply);
    Py_DECREF(result);
    return done;
  }

  // New references to the call's args tuple and kwds dict (on failure,
  // whichever was made is the caller's to drop).
  bool arguments(const runtime::manager_request& request, PyObject*& args, PyObject*& kwds) {
    if (request.arguments.empty()) {
      args = PyTuple_New(0);
      kwds = PyDict_New();
      return args != nullptr && kwds != nullptr;
    }
    PyObject* decoded = unpickle(request.arguments, loads_);
    if (decoded == nullptr) return false;
    if (!(request.flags & runtime::request_flags::with_keywords)) {
      args = decoded;
      kwds = PyDict_New();
      return kwds != nullptr;
    }
    if (!PyTuple_Check(decoded) || PyTuple_GET_SIZE(decoded) != 2) {
      Py_DECREF(decoded);
      PyErr_SetString(PyExc_TypeError, "manager request arguments must be (args, kwds)");
      return false;
    }
    args = Py_NewRef(PyTuple_GET_ITEM(decoded, 0));
    kwds = Py_NewRef(PyTuple_GET_ITEM(decoded, 1));
    Py_DECREF(decoded);
    return true;
  }

  bool encode_reply(PyObject* result, std::string& reply) {
    if (!PyTuple_Check(result) || PyTuple_GET_SIZE(result) != 2) {
      PyErr_SetString(PyExc_TypeError, "a manager reply must be (tag, payload)");
      return false;
    }
    PyObject* tag = PyTuple_GET_ITEM(result, 0);
    PyObject* payload = PyTuple_GET_ITEM(result, 1);
    const int code = tag_code(tag);
    if (code == static_cast<int>(reply_tag::returned) && payload == Py_None) {
      reply.push_back(static_cast<char>(reply_tag::returned_none));
      return true;
    }
    if (code >= 0 && builtin_pickle::encode(payload, scratch_)) {
      reply.push_back(static_cast<char>(code));
      reply += scratch_;
      return true;
    }
    PyObject* frame = PyObject_CallFunctionObjArgs(encode_, tag, payload, nullptr);
    if (frame == nullptr) return false;
    const bool done = append_pickle(frame, reply);
    Py_DECREF(frame);
    return done;
  }

  // The '#TRACEBACK' reply for the pending exception.
  void fail(std::string& reply) {
    reply.clear();
    reply.push_back(static_cast<char>(reply_tag::traceback));
    PyObject *type, *exc, *traceback;
    PyErr_Fetch(&type, &exc, &traceback);
    PyErr_NormalizeException(&type, &exc, &traceback);
    if (exc != nullptr && traceback != nullptr) PyException_SetTraceback(exc, traceback);
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    PyObject* text = exc != nullptr ? PyObject_CallOneArg(failure_, exc) : nullptr;
    Py_XDECREF(exc);
    if (text == nullptr || !PyUnicode_Check(text) || !builtin_pickle::encode(text, scratch_)) {
      PyErr_Clear();
      PyObject* plain = PyUnicode_FromString("the manager could not answer this request\n");
      if (plain == nullptr || !builtin_pickle::encode(plain, scratch_)) scratch_.clear();
      Py_XDECREF(plain);
    }
    Py_XDECREF(text);
    PyErr_Clear();
    reply += scratch_;
  }

  PyObject* answer_;
  PyObject* encode_;
  PyObject* loads_;
  PyObject* failure_;
  static thread_local std::string scratch_;
};

thread_local python_host::thread_own python_host::own_;
thread_local std::string python_host::scratch_;

class dispatch_handle {
 public:
  dispatch_handle(py::object answer, py::object encode, py::object loads, py::object failure)
      : dispatch_(std::make_unique<runtime::manager_dispatch>(std::make_shared<python_host>(
            std::move(answer), std::move(encode), std::move(loads), std::move(failure)))) {}

  runtime::manager_dispatch& get() {
    if (!dispatch_) throw std::system_error(std::make_error_code(std::errc::operation_canceled), "manager dispatch forgotten");
    return *dispatch_;
  }

  py::tuple open_link() {
    const runtime::link_offer offer = get().open_link();
    return py::make_tuple(offer.requests, offer.requests_ticket, offer.replies, offer.replies_ticket);
  }

  // Serves a new link on this thread: ready(offer) passes the offer on
  // (with the GIL), then the loop runs without it until the link ends.
  void serve_here(const py::object& ready) {
    runtime::manager_dispatch& d = get();
    bool released = false;
    try {
      d.serve_here([&](const runtime::link_offer& offer) {
        ready(py::make_tuple(offer.requests, offer.requests_ticket, offer.replies, offer.replies_ticket));
        python_host::release_for_serving();
        released = true;
      });
    } catch (abi::__forced_unwind&) {
      throw;  // the thread is being ended (interpreter exit): no GIL to take
    } catch (...) {
      if (released) python_host::take_back_after_serving();
      throw;
    }
    python_host::take_back_after_serving();
  }

  std::size_t stop(double grace) {
    runtime::manager_dispatch& d = get();
    const auto wait = std::chrono::milliseconds(static_cast<long long>(grace > 0 ? grace * 1000 : 0));
    return without_gil([&] { return d.stop(wait); });
  }

  void forget() noexcept { (void)dispatch_.release(); }

 private:
  std::unique_ptr<runtime::manager_dispatch> dispatch_;
};


// manager_request(ident, name, args, kwds, dump) -> bytes
PyObject* manager_request(PyObject*, PyObject* const* argv, Py_ssize_t argc) {
  if (argc != 5) {
    PyErr_SetString(PyExc_TypeError, "manager_request(ident, name, args, kwds, dump)");
    return nullptr;
  }
  PyObject* ident = argv[0];
  PyObject* args = argv[2];
  PyObject* kwds = argv[3];
  std::uint8_t flags = 0;
  if (ident == Py_None) flags |= runtime::request_flags::server_function;
  const bool keywords = !(PyDict_Check(kwds) && PyDict_GET_SIZE(kwds) == 0);
  if (keywords) flags |= runtime::request_flags::with_keywords;
  Py_ssize_t ident_size = 0, name_size = 0;
  const char* ident_text = ident == Py_None ? "" : PyUnicode_AsUTF8AndSize(ident, &ident_size);
  const char* name_text = PyUnicode_AsUTF8AndSize(argv[1], &name_size);
  if (ident_text == nullptr || name_text == nullptr) return nullptr;
  // `frame` is this call's own: pickling by `dump` may run a __reduce__
  // that makes a manager call on this thread (a nested manager_request).
  std::string frame;
  static thread_local std::string body;
  const bool done = errors_to_python([&] {
    runtime::encode_request_head(flags, std::string_view(ident_text, static_cast<std::size_t>(ident_size)),
                                 std::string_view(name_text, static_cast<std::size_t>(name_size)), frame);
  });
  if (!done) return nullptr;
  const bool no_arguments = !keywords && PyTuple_Check(args) && PyTuple_GET_SIZE(args) == 0;
  if (!no_arguments) {
    PyObject* packed = keywords ? PyTuple_Pack(2, args, kwds) : Py_NewRef(args);
    if (packed == nullptr) return nullptr;
    if (builtin_pickle::encode(packed, body)) {
      frame += body;
    } else {
      PyObject* pickled = PyObject_CallOneArg(argv[4], packed);
      const bool appended = pickled != nullptr && append_pickle(pickled, frame);
      Py_XDECREF(pickled);
      if (!appended) {
        Py_DECREF(packed);
        return nullptr;
      }
    }
    Py_DECREF(packed);
  }
  return PyBytes_FromStringAndSize(frame.data(), static_cast<Py_ssize_t>(frame.size()));
}

// manager_reply(data, loads) -> (tag, payload)
PyObject* manager_reply(PyObject*, PyObject* const* argv, Py_ssize_t argc) {
  if (argc != 2) {
    PyErr_SetString(PyExc_TypeError, "manager_reply(data, loads)");
    return nullptr;
  }
  Py_buffer view;
  if (PyObject_GetBuffer(argv[0], &view, PyBUF_SIMPLE) != 0) return nullptr;
  const std::span<const std::byte> frame = span_of(view);
  PyObject* result = nullptr;
  const int code = frame.empty() ? -1 : std::to_integer<int>(frame[0]);
  if (code == static_cast<int>(reply_tag::returned_none)) {
    result = PyTuple_Pack(2, tag_names()[0], Py_None);
  } else if (code < 0 || code >= tag_count) {
    PyErr_Format(PyExc_ValueError, "a manager reply frame of %zd bytes with no known tag", view.len);
  } else if (PyObject* payload = unpickle(frame.subspan(1), argv[1])) {
    result = PyTuple_Pack(2, tag_names()[code], payload);
    Py_DECREF(payload);
  }
  PyBuffer_Release(&view);
  return result;
}

PyMethodDef client_functions[] = {
    {"manager_request", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(manager_request)), METH_FASTCALL,
     "manager_request(ident, name, args, kwds, dump) -> bytes: a manager link's request frame."},
    {"manager_reply", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(manager_reply)), METH_FASTCALL,
     "manager_reply(data, loads) -> (tag, payload): a manager link's reply frame read."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

void bind_manager(py::module_& m) {
  py::class_<dispatch_handle>(m, "ManagerDispatch", "The native server of a manager's channel links.")
      .def(py::init<py::object, py::object, py::object, py::object>(), py::arg("answer"), py::arg("encode"),
           py::arg("loads"), py::arg("failure"))
      .def("open_link", &dispatch_handle::open_link,
           "A new link: (requests name, ticket, replies name, ticket) for the client.")
      .def("serve_here", &dispatch_handle::serve_here, py::arg("ready"),
           "Serve a new link on this thread until it ends; ready(offer) passes the offer to the client first.")
      .def("live_links", [](dispatch_handle& h) { return h.get().live_links(); })
      .def("stop", &dispatch_handle::stop, py::arg("grace") = 0.2,
           "Close every link; wait up to `grace` seconds for their threads. Returns how many still run.")
      .def("forget", &dispatch_handle::forget, "Drop the dispatcher without touching it (a forked child).");
  // The reply tags in the order of their codes on the wire.
  py::tuple tags(tag_count);
  for (int i = 0; i < tag_count; ++i) tags[i] = py::reinterpret_borrow<py::object>(tag_names()[i]);
  m.attr("MANAGER_REPLY_TAGS") = tags;
  if (PyModule_AddFunctions(m.ptr(), client_functions) != 0) throw py::error_already_set();
}

}  // namespace mphost::embed
