#include "mphost/embed/channel_send.hpp"

#include <cerrno>
#include <cstring>
#include <optional>
#include <span>
#include <system_error>
#include <vector>

#include "mphost/embed/blocking_call.hpp"
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

// The outcome of a send in Python's terms (see the header).
int outcome(const std::optional<ipc::wait_result>& result) {
  if (!result) return -1;
  switch (*result) {
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
  return outcome(blocking_call(
      until, [&](const ipc::deadline& d) { return ch.send(bytes, d, sent); },
      bytes.size() > release_gil_above ? first_attempt::released : first_attempt::holding_gil));
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
  if (total > ch.large_threshold()) {
    std::optional<ipc::large_block> block;
    if (!errors_to_python([&] { block.emplace(ch.make_block(total)); })) return -1;
    if (total > release_gil_above) {
      without_gil([&] { held.copy_to(block->bytes()); });
    } else {
      held.copy_to(block->bytes());
    }
    return outcome(blocking_call(until, [&](const ipc::deadline& d) { return ch.send_block(*block, d, sent); }));
  }
  ipc::channel::reservation space;
  const std::optional<ipc::wait_result> result =
      blocking_call(until, [&](const ipc::deadline& d) { return ch.reserve(total, space, d); });
  if (result == ipc::wait_result::ok) {
    held.copy_to(space.bytes());
    space.commit();
    if (sent != nullptr) *sent = space.id();
  }
  return outcome(result);
}

}  // namespace mphost::embed
