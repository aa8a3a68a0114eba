#include "mphost/embed/channel_send.hpp"

#include <cerrno>
#include <cstring>
#include <span>
#include <system_error>
#include <vector>

#include "mphost/embed/errors.hpp"
#include "mphost/ipc/channel.hpp"

namespace mphost::embed {
namespace {

// Above this many bytes a copy is worth giving the GIL up for.
constexpr std::size_t release_gil_above = 64 * 1024;

// The parts' buffers, released when this goes away.
class held_buffers {
 public:
  ~held_buffers() {
    for (Py_buffer& view : views_) PyBuffer_Release(&view);
  }
  bool hold(PyObject* part) {
    Py_buffer view;
    if (PyObject_GetBuffer(part, &view, PyBUF_C_CONTIGUOUS) != 0) return false;
    views_.push_back(view);
    total_ += static_cast<std::size_t>(view.len);
    return true;
  }
  std::size_t total() const noexcept { return total_; }
  void copy_to(std::span<std::byte> out) const noexcept {
    std::size_t at = 0;
    for (const Py_buffer& view : views_) {
      std::memcpy(out.data() + at, view.buf, static_cast<std::size_t>(view.len));
      at += static_cast<std::size_t>(view.len);
    }
  }

 private:
  std::vector<Py_buffer> views_;
  std::size_t total_ = 0;
};

// The GIL released for a scope, and taken back however the scope is left
// (a core call may throw). Taking it back may end a daemon thread of a
// finalizing interpreter (pthread_exit): not noexcept, so that unwinding
// passes through instead of aborting the process.
class released_gil {
 public:
  released_gil() noexcept : state_(PyEval_SaveThread()) {}
  ~released_gil() noexcept(false) { PyEval_RestoreThread(state_); }
  released_gil(const released_gil&) = delete;
  released_gil& operator=(const released_gil&) = delete;

 private:
  PyThreadState* state_;
};

// Runs `step` (which returns a wait_result) once, with the GIL unless
// `first_without_gil`, then, while it times out before `until` or is
// interrupted, without it. `python_error`: a signal handler raised.
template <class Step>
ipc::wait_result with_waiting(const ipc::deadline& until, bool first_without_gil, Step&& step, bool& python_error) {
  python_error = false;
  ipc::wait_result result;
  if (first_without_gil) {
    released_gil unlocked;
    result = step(until);
  } else {
    result = step(ipc::deadline::immediate());
  }
  while ((result == ipc::wait_result::timed_out && !until.expired()) || result == ipc::wait_result::interrupted) {
    if (result == ipc::wait_result::interrupted && PyErr_CheckSignals() != 0) {
      python_error = true;
      break;
    }
    released_gil unlocked;
    result = step(until);
  }
  return result;
}

// The outcome of a send in Python's terms (see the header).
int outcome(ipc::wait_result result, bool python_error) {
  if (python_error) return -1;
  switch (result) {
    case ipc::wait_result::ok:
    case ipc::wait_result::owner_died:  // the frame went in all the same
      return 1;
    case ipc::wait_result::timed_out:
      return 0;
    default: {
      PyObject* args = Py_BuildValue("(is)", EPIPE, "the other end of the channel is closed");
      if (args != nullptr) {
        PyErr_SetObject(PyExc_BrokenPipeError, args);
        Py_DECREF(args);
      }
      return -1;
    }
  }
}

// Runs `fn` (which returns the outcome), turning C++ errors into the Python
// exception errors.cpp chooses.
template <class Fn>
int guarded(Fn&& fn) {
  try {
    return fn();
  } catch (const std::system_error& e) {
    set_python_error(e);
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return -1;
}

}  // namespace

void note_calling_thread() noexcept {
  thread_local int daemon = -1;
  if (daemon >= 0) return;
  static PyObject* current_thread = nullptr;
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  if (current_thread == nullptr) {
    PyObject* threading = PyImport_ImportModule("threading");
    if (threading != nullptr) {
      current_thread = PyObject_GetAttrString(threading, "current_thread");
      Py_DECREF(threading);
    }
  }
  PyObject* thread = current_thread != nullptr ? PyObject_CallNoArgs(current_thread) : nullptr;
  PyObject* flag = thread != nullptr ? PyObject_GetAttrString(thread, "daemon") : nullptr;
  const int is_daemon = flag != nullptr ? PyObject_IsTrue(flag) : -1;
  Py_XDECREF(flag);
  Py_XDECREF(thread);
  if (is_daemon >= 0) {
    daemon = is_daemon;
    ipc::park_waiting_calls_at_exit(is_daemon != 0);
  }
  PyErr_Clear();  // not known: asked again next time
  PyErr_Restore(type, value, tb);
}

int send_message(ipc::channel& ch, std::span<const std::byte> bytes, const ipc::deadline& until, std::uint64_t* sent) {
  note_calling_thread();
  return guarded([&] {
    bool python_error = false;
    const ipc::wait_result result = with_waiting(
        until, bytes.size() > release_gil_above, [&](const ipc::deadline& d) { return ch.send(bytes, d, sent); },
        python_error);
    return outcome(result, python_error);
  });
}

int send_gathered(ipc::channel& ch, PyObject* parts, const ipc::deadline& until, std::uint64_t* sent) {
  note_calling_thread();
  PyObject* seq = PySequence_Fast(parts, "parts must be a list or tuple of bytes-like objects");
  if (seq == nullptr) return -1;
  held_buffers held;
  const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
  for (Py_ssize_t i = 0; i < n; ++i) {
    if (!held.hold(PySequence_Fast_GET_ITEM(seq, i))) {
      Py_DECREF(seq);
      return -1;
    }
  }
  Py_DECREF(seq);
  const std::size_t total = held.total();
  return guarded([&] {
    bool python_error = false;
    ipc::wait_result result;
    if (total > ch.large_threshold()) {
      ipc::large_block block = ch.make_block(total);
      if (total > release_gil_above) {
        released_gil unlocked;
        held.copy_to(block.bytes());
      } else {
        held.copy_to(block.bytes());
      }
      result = with_waiting(until, false, [&](const ipc::deadline& d) { return ch.send_block(block, d, sent); },
                            python_error);
    } else {
      ipc::channel::reservation space;
      result = with_waiting(until, false, [&](const ipc::deadline& d) { return ch.reserve(total, space, d); },
                            python_error);
      if (result == ipc::wait_result::ok) {
        held.copy_to(space.bytes());
        space.commit();
        if (sent != nullptr) *sent = space.id();
      }
    }
    return outcome(result, python_error);
  });
}

}  // namespace mphost::embed
