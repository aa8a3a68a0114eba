// `_mphost.QueuePort` (queue_port.hpp): the hot path of the shim's Queue.
//
// Written against the C API with vectorcall methods: a put or a get of a
// small item costs well under a microsecond, and a generic binding's
// dispatch would be a good part of that.
#include "mphost/embed/queue_port.hpp"

#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <system_error>

#include "mphost/embed/blocking_call.hpp"
#include "mphost/embed/builtin_pickle.hpp"
#include "mphost/embed/errors.hpp"
#include "mphost/embed/channel_send.hpp"
#include "mphost/ipc/channel.hpp"
#include "mphost/ipc/error.hpp"
#include "queue_port_args.hpp"

namespace mphost::embed {
namespace {

struct port_object {
  PyObject_HEAD
  PyObject* queue_ref;  // weak reference to the queue, or None
  PyObject* writer;     // _mphost.Channel or None
  PyObject* reader;     // _mphost.Channel or None
  ipc::channel* out;    // inside `writer`
  ipc::channel* in;     // inside `reader`
  PyObject* acquire;    // the slot semaphore's bound acquire, or nullptr (no slots)
  PyObject* release;    // and release
  PyObject* count;      // the task counter's bound release, or nullptr
  PyObject* dumps;      // fallback pickler: obj -> bytes-like
  PyObject* loads;      // fallback unpickler: bytes -> obj
  PyObject* keep;       // kept alive with the port (the queue's connections)
  bool closed;
  bool simple;          // SimpleQueue's calls: put(obj), get(), pickling errors raised
  bool feeder;          // put hands items to queue._to_feeder instead of the channel
};

// queue.Full and queue.Empty, imported once.
PyObject* full_error = nullptr;
PyObject* empty_error = nullptr;

bool import_queue_errors() {
  if (full_error != nullptr) return true;
  PyObject* module = PyImport_ImportModule("queue");
  if (module == nullptr) return false;
  PyObject* full = PyObject_GetAttrString(module, "Full");
  PyObject* empty = full != nullptr ? PyObject_GetAttrString(module, "Empty") : nullptr;
  Py_DECREF(module);
  if (empty == nullptr) {
    Py_XDECREF(full);
    return false;
  }
  full_error = full;
  empty_error = empty;
  return true;
}

// Calls `fn()` when there is one, dropping its result; false if it raised.
bool call_quietly(PyObject* fn) {
  if (fn == nullptr) return true;
  PyObject* result = PyObject_CallNoArgs(fn);
  Py_XDECREF(result);
  return result != nullptr;
}

// The queue, or nullptr (no error) once it is gone. New reference.
PyObject* queue_of(port_object* self) {
  if (self->queue_ref == Py_None) return nullptr;
  PyObject* queue = PyWeakref_GetObject(self->queue_ref);
  return queue == Py_None ? nullptr : Py_NewRef(queue);
}

PyObject* raise_closed(port_object* self) {
  PyObject* queue = queue_of(self);
  if (queue != nullptr) {
    PyErr_Format(PyExc_ValueError, "Queue %R is closed", queue);
    Py_DECREF(queue);
  } else {
    PyErr_SetString(PyExc_ValueError, "Queue is closed");
  }
  return nullptr;
}

ipc::channel* usable(ipc::channel* ch, const char* what) {
  if (ch == nullptr) {
    PyErr_Format(PyExc_OSError, "this queue end cannot %s", what);
    return nullptr;
  }
  if (!*ch) {
    set_python_error(std::system_error(make_error_code(errc::handle_closed)));
    return nullptr;
  }
  return ch;
}

// Reports an item that could not be pickled, as the stdlib's feeder thread
// does: the slot goes back, then the queue's hook runs with the exception
// as the one being handled. The pending error is consumed; false if the
// hook (or the release) raised.
bool report_unpicklable(port_object* self, PyObject* obj) {
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  if (tb != nullptr) PyException_SetTraceback(value, tb);
  Py_XDECREF(type);
  Py_XDECREF(tb);
  if (!call_quietly(self->release)) {
    Py_DECREF(value);
    return false;
  }
  PyObject* queue = queue_of(self);
  PyObject* previous = PyErr_GetHandledException();
  PyErr_SetHandledException(value);
  PyObject* result = queue != nullptr ? PyObject_CallMethod(queue, "_on_queue_feeder_error", "OO", value, obj)
                                      : (PyErr_Display(nullptr, value, nullptr), Py_NewRef(Py_None));
  PyErr_SetHandledException(previous);
  Py_XDECREF(previous);
  Py_XDECREF(queue);
  Py_DECREF(value);
  if (result == nullptr) return false;
  Py_DECREF(result);
  return true;
}

// Only Exception subclasses are reported; others (KeyboardInterrupt...)
// propagate.
bool pickling_failed_with_exception() { return PyErr_ExceptionMatches(PyExc_Exception) != 0; }

// The pickle of `obj` into `buffer` (builtin codec) or as a new bytes-like
// object in `spilled` (fallback). false with the error set on failure.
bool pickle_item(port_object* self, PyObject* obj, std::string& buffer, PyObject*& spilled) {
  spilled = nullptr;
  if (builtin_pickle::encode(obj, buffer)) return true;
  spilled = PyObject_CallOneArg(self->dumps, obj);
  return spilled != nullptr;
}

// An item that failed before it was sent: its slot goes back (a
// KeyboardInterrupt while pickling, a broken channel), the pending error
// kept. Returns -1.
int unsent(port_object* self) {
  if (self->release == nullptr) return -1;
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  if (!call_quietly(self->release)) PyErr_Clear();
  PyErr_Restore(type, value, tb);
  return -1;
}

// Pickles `obj` and sends it. 1: sent; 0: not picklable, reported; -1: error.
int pickle_and_send(port_object* self, ipc::channel* ch, PyObject* obj) {
  thread_local std::string buffer;
  PyObject* spilled = nullptr;
  if (!pickle_item(self, obj, buffer, spilled)) {
    if (self->simple || !pickling_failed_with_exception()) return unsent(self);
    return report_unpicklable(self, obj) ? 0 : -1;
  }
  // Counted before it can be got, so that a task_done() for it never
  // comes first.
  if (!call_quietly(self->count)) {
    Py_XDECREF(spilled);
    return unsent(self);
  }
  if (spilled == nullptr) {
    return send_message(*ch, std::as_bytes(std::span(buffer.data(), buffer.size())), ipc::deadline::infinite()) == 1
               ? 1
               : unsent(self);
  }
  if (PyList_Check(spilled) || PyTuple_Check(spilled)) {
    // A pickle with out-of-band buffers, in parts.
    const int sent = send_gathered(*ch, spilled, ipc::deadline::infinite());
    Py_DECREF(spilled);
    return sent == 1 ? 1 : unsent(self);
  }
  Py_buffer view;
  if (PyObject_GetBuffer(spilled, &view, PyBUF_C_CONTIGUOUS) != 0) {
    Py_DECREF(spilled);
    return unsent(self);
  }
  const bool sent = send_message(*ch, std::span(static_cast<const std::byte*>(view.buf), static_cast<std::size_t>(view.len)),
                                 ipc::deadline::infinite()) == 1;
  PyBuffer_Release(&view);
  Py_DECREF(spilled);
  return sent ? 1 : unsent(self);
}

// Counts the item as a task, then hands it to queue._to_feeder(obj), the
// buffer of a feeder thread. 1 on success, -1 with the error set.
int hand_to_feeder(port_object* self, PyObject* obj) {
  if (!call_quietly(self->count)) return -1;
  PyObject* queue = queue_of(self);
  if (queue == nullptr) {
    PyErr_SetString(PyExc_TypeError, "a port without its queue has no feeder");
    return -1;
  }
  PyObject* result = PyObject_CallMethod(queue, "_to_feeder", "O", obj);
  Py_DECREF(queue);
  Py_XDECREF(result);
  return result != nullptr ? 1 : -1;
}

// ---- methods ----

// The queue, held for a call: the port refers to it weakly (no cycle), and
// a caller of queue.put/get holds only the port, so without this the queue
// (and its connections, which close the channel) could be collected while
// the call waits, as it cannot be on the stdlib.
class queue_hold {
 public:
  explicit queue_hold(port_object* self) noexcept : queue_(queue_of(self)) {}
  // Without the GIL only while a daemon thread is being ended by a
  // finalizing interpreter (unwinding out of a wait): then the reference is
  // left alone.
  ~queue_hold() {
    if (PyGILState_Check()) Py_XDECREF(queue_);
  }
  queue_hold(const queue_hold&) = delete;
  queue_hold& operator=(const queue_hold&) = delete;

 private:
  PyObject* queue_;
};

PyObject* port_put(PyObject* op, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  auto* self = reinterpret_cast<port_object*>(op);
  const queue_hold hold(self);
  PyObject *block, *timeout;
  if (!parse_block_timeout("put", args, nargs, kwnames, 1, self->simple, block, timeout)) return nullptr;
  if (self->closed) return raise_closed(self);
  ipc::channel* ch = usable(self->out, "put");
  if (ch == nullptr) return nullptr;
  if (self->acquire != nullptr) {
    PyObject* got;
    if (block == nullptr && timeout == nullptr) {
      got = PyObject_CallNoArgs(self->acquire);
    } else {
      PyObject* call_args[] = {block != nullptr ? block : Py_True, timeout != nullptr ? timeout : Py_None};
      got = PyObject_Vectorcall(self->acquire, call_args, 2, nullptr);
    }
    if (got == nullptr) return nullptr;
    const int acquired = PyObject_IsTrue(got);
    Py_DECREF(got);
    if (acquired < 0) return nullptr;
    if (!acquired) {
      PyErr_SetNone(full_error);
      return nullptr;
    }
  }
  if ((self->feeder ? hand_to_feeder(self, args[0]) : pickle_and_send(self, ch, args[0])) < 0) return nullptr;
  Py_RETURN_NONE;
}

PyObject* port_get(PyObject* op, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  auto* self = reinterpret_cast<port_object*>(op);
  const queue_hold hold(self);
  PyObject *block_obj, *timeout;
  if (!parse_block_timeout("get", args, nargs, kwnames, 0, self->simple, block_obj, timeout)) return nullptr;
  if (self->closed) return raise_closed(self);
  int block = 1;
  if (block_obj != nullptr && (block = PyObject_IsTrue(block_obj)) < 0) return nullptr;
  ipc::channel* ch = usable(self->in, "get");
  if (ch == nullptr) return nullptr;
  note_calling_thread();

  // The thread's message buffer, taken for this call (a get re-entered from
  // a finalizer makes its own).
  thread_local ipc::message spare;
  ipc::message msg = std::move(spare);
  const auto attempt = [&](const ipc::deadline& d) { return ch->recv(msg, d); };
  const std::optional<ipc::wait_result> waited =
      block ? blocking_call(python_timeout{timeout}, attempt) : blocking_call(ipc::deadline::immediate(), attempt);
  if (!waited) return nullptr;
  const ipc::wait_result result = *waited;
  switch (result) {
    case ipc::wait_result::ok: break;
    case ipc::wait_result::timed_out:
    case ipc::wait_result::interrupted:
      spare = std::move(msg);
      PyErr_SetNone(empty_error);
      return nullptr;
    case ipc::wait_result::closed:
      spare = std::move(msg);
      PyErr_SetString(PyExc_EOFError, "");
      return nullptr;
    case ipc::wait_result::owner_died:
      set_python_error(std::system_error(make_error_code(errc::corrupt_frame), "unexpected channel outcome"));
      return nullptr;
  }
  // The message is ours: the slot goes back before unpickling, as the
  // stdlib's Queue does it.
  if (!call_quietly(self->release)) return nullptr;
  const auto bytes = msg.bytes();
  if (msg.is_block()) {
    // A large message is unpickled in place, from the block's mapping: no
    // copy of the message, and out-of-band buffers (numpy arrays...) stay
    // where they are, keeping the block while they live. (The builtin
    // codec's output never travels as a block.)
    PyObject* block = block_object(msg.release_block());
    msg.clear();
    spare = std::move(msg);
    if (block == nullptr) return nullptr;
    PyObject* item = PyObject_CallOneArg(self->loads, block);
    Py_DECREF(block);
    return item;
  }
  PyObject* item = builtin_pickle::decode(bytes);
  if (item == nullptr) {
    PyObject* data = PyBytes_FromStringAndSize(reinterpret_cast<const char*>(bytes.data()),
                                               static_cast<Py_ssize_t>(bytes.size()));
    msg.clear();
    spare = std::move(msg);
    if (data == nullptr) return nullptr;
    item = PyObject_CallOneArg(self->loads, data);
    Py_DECREF(data);
    return item;
  }
  msg.clear();
  spare = std::move(msg);
  return item;
}

PyObject* port_dumps(PyObject* op, PyObject* obj) {
  auto* self = reinterpret_cast<port_object*>(op);
  thread_local std::string buffer;
  if (builtin_pickle::encode(obj, buffer)) {
    return PyBytes_FromStringAndSize(buffer.data(), static_cast<Py_ssize_t>(buffer.size()));
  }
  return PyObject_CallOneArg(self->dumps, obj);
}

PyObject* port_close(PyObject* op, PyObject*) {
  reinterpret_cast<port_object*>(op)->closed = true;
  Py_RETURN_NONE;
}

PyObject* port_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
  static const char* keywords[] = {"queue", "writer", "reader", "semlock", "dumps", "loads", "tasks", "simple", "feeder", "keep", nullptr};
  PyObject *queue, *writer, *reader, *semlock, *dumps, *loads, *tasks = Py_None, *keep = Py_None;
  int simple = 0, feeder = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOO|$OppO:QueuePort", const_cast<char**>(keywords), &queue,
                                   &writer, &reader, &semlock, &dumps, &loads, &tasks, &simple, &feeder, &keep)) {
    return nullptr;
  }
  if (!import_queue_errors()) return nullptr;
  if (!PyCallable_Check(dumps) || !PyCallable_Check(loads)) {
    PyErr_SetString(PyExc_TypeError, "dumps and loads must be callable");
    return nullptr;
  }
  ipc::channel* out = writer == Py_None ? nullptr : channel_of(writer);
  if (writer != Py_None && out == nullptr) return nullptr;
  ipc::channel* in = reader == Py_None ? nullptr : channel_of(reader);
  if (reader != Py_None && in == nullptr) return nullptr;
  PyObject* ref = queue == Py_None ? Py_NewRef(Py_None) : PyWeakref_NewRef(queue, nullptr);
  if (ref == nullptr) return nullptr;
  PyObject* acquire = nullptr;
  PyObject* release = nullptr;
  PyObject* count = nullptr;
  bool ok = true;
  if (semlock != Py_None) {
    ok = (acquire = PyObject_GetAttrString(semlock, "acquire")) != nullptr &&
         (release = PyObject_GetAttrString(semlock, "release")) != nullptr;
  }
  if (ok && tasks != Py_None) ok = (count = PyObject_GetAttrString(tasks, "release")) != nullptr;
  auto* self = ok ? reinterpret_cast<port_object*>(type->tp_alloc(type, 0)) : nullptr;
  if (self == nullptr) {
    Py_DECREF(ref);
    Py_XDECREF(acquire);
    Py_XDECREF(release);
    Py_XDECREF(count);
    return nullptr;
  }
  self->queue_ref = ref;
  self->writer = Py_NewRef(writer);
  self->reader = Py_NewRef(reader);
  self->out = out;
  self->in = in;
  self->acquire = acquire;
  self->release = release;
  self->count = count;
  self->dumps = Py_NewRef(dumps);
  self->loads = Py_NewRef(loads);
  self->keep = Py_NewRef(keep);
  self->closed = false;
  self->simple = simple != 0;
  self->feeder = feeder != 0;
  return reinterpret_cast<PyObject*>(self);
}

void port_dealloc(PyObject* op) {
  auto* self = reinterpret_cast<port_object*>(op);
  PyTypeObject* type = Py_TYPE(op);
  Py_XDECREF(self->queue_ref);
  Py_XDECREF(self->writer);
  Py_XDECREF(self->reader);
  Py_XDECREF(self->acquire);
  Py_XDECREF(self->release);
  Py_XDECREF(self->count);
  Py_XDECREF(self->dumps);
  Py_XDECREF(self->loads);
  Py_XDECREF(self->keep);
  type->tp_free(op);
  Py_DECREF(type);
}

PyObject* get_closed(PyObject* op, void*) { return PyBool_FromLong(reinterpret_cast<port_object*>(op)->closed); }

PyMethodDef port_methods[] = {
    {"put", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(port_put)), METH_FASTCALL | METH_KEYWORDS,
     "put(obj, block=True, timeout=None): Queue.put."},
    {"get", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(port_get)), METH_FASTCALL | METH_KEYWORDS,
     "get(block=True, timeout=None): Queue.get."},
    {"dumps", port_dumps, METH_O, "The pickle put() sends for obj, as bytes."},
    {"close", port_close, METH_NOARGS, "Later puts and gets raise ValueError."},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef port_getset[] = {
    {"closed", get_closed, nullptr, "Whether close() was called.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyType_Slot port_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(port_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(port_dealloc)},
    {Py_tp_methods, port_methods},
    {Py_tp_getset, port_getset},
    {Py_tp_doc, const_cast<char*>("Queue.put/get over a channel and a slot semaphore, in one native call each.")},
    {0, nullptr},
};

PyType_Spec port_spec = {
    "_mphost.QueuePort",
    sizeof(port_object),
    0,
    Py_TPFLAGS_DEFAULT,
    port_slots,
};

}  // namespace

bool add_queue_port(PyObject* module) {
  PyObject* type = PyType_FromSpec(&port_spec);
  if (type == nullptr) return false;
  const int rc = PyModule_AddObjectRef(module, "QueuePort", type);
  Py_DECREF(type);
  if (rc < 0) return false;
  return add_codec_hooks(module);
}

}  // namespace mphost::embed
