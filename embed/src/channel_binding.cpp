// `_mphost.Channel`: the shared-memory channel (ipc::channel) for the shim's
// connections and queues.
//
// Outcomes become what the stdlib's pipes give: a send with no reader left
// raises BrokenPipeError, a recv on an empty channel with no writer left
// raises EOFError, timeouts return False / None. Calls try once with the GIL
// held (the common case needs no wait) and release it only to wait or to
// copy a large message.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "mphost/embed/bindings.hpp"
#include "mphost/embed/blocking_call.hpp"
#include "mphost/embed/channel_send.hpp"
#include "mphost/embed/queue_port.hpp"
#include "mphost/ipc/channel.hpp"
#include "mphost/ipc/error.hpp"

namespace py = pybind11;

namespace mphost::embed {
namespace {

ipc::endpoint_role role_from(const std::string& role) {
  if (role == "reader") return ipc::endpoint_role::reader;
  if (role == "writer") return ipc::endpoint_role::writer;
  if (role == "both") return ipc::endpoint_role::both;
  throw py::value_error("role must be 'reader', 'writer' or 'both', not " + role);
}

const char* role_name(ipc::endpoint_role role) {
  switch (role) {
    case ipc::endpoint_role::reader: return "reader";
    case ipc::endpoint_role::writer: return "writer";
    case ipc::endpoint_role::both: return "both";
  }
  return "?";
}

// The deadline for a Python timeout (blocking_call.hpp); the Python error
// raised when it is not one.
ipc::deadline deadline_from(const py::object& timeout) {
  ipc::deadline until = ipc::deadline::infinite();
  if (!timeout_deadline(timeout.ptr(), until)) throw py::error_already_set();
  return until;
}

// recv's receipt: (buffer, byte_offset) naming 8 writable, 8-byte aligned
// bytes, held for the call. ValueError when they are not.
struct receipt_slot {
  explicit receipt_slot(const py::object& spec) {
    if (spec.is_none()) return;
    if (!PyTuple_Check(spec.ptr()) || PyTuple_GET_SIZE(spec.ptr()) != 2) {
      throw py::value_error("receipt must be a (buffer, byte_offset) tuple");
    }
    const auto offset = py::cast<Py_ssize_t>(py::handle(PyTuple_GET_ITEM(spec.ptr(), 1)));
    if (PyObject_GetBuffer(PyTuple_GET_ITEM(spec.ptr(), 0), &view, PyBUF_WRITABLE) != 0) throw py::error_already_set();
    if (offset < 0 || view.len < 8 || offset > view.len - 8) {
      const std::string what = "receipt offset " + std::to_string(offset) + " is outside the buffer of " +
                               std::to_string(view.len) + " bytes (8 are needed)";
      PyBuffer_Release(&view);
      throw py::value_error(what);
    }
    auto* at = static_cast<char*>(view.buf) + offset;
    if (reinterpret_cast<std::uintptr_t>(at) % alignof(std::atomic<std::uint64_t>) != 0) {
      PyBuffer_Release(&view);
      throw py::value_error("receipt must be 8-byte aligned");
    }
    held = true;
    word = reinterpret_cast<std::atomic<std::uint64_t>*>(at);
  }
  ~receipt_slot() {
    if (held) PyBuffer_Release(&view);
  }
  receipt_slot(const receipt_slot&) = delete;
  receipt_slot& operator=(const receipt_slot&) = delete;

  Py_buffer view{};
  bool held = false;
  std::atomic<std::uint64_t>* word = nullptr;
};

// A large message received in place: its mapping, exposed as a buffer.
struct block_view {
  ipc::large_block block;
};

class channel_handle {
 public:
  explicit channel_handle(ipc::channel ch) : ch_(std::move(ch)) {}

  ipc::channel& get() {
    if (!ch_) throw std::system_error(make_error_code(errc::handle_closed));
    return ch_;
  }

  // The message's identity (a nonzero int) when sent, False on timeout.
  py::object send(const py::handle& data, const py::object& timeout) {
    std::uint64_t sent_id = 0;
    int sent;
    if (PyList_Check(data.ptr()) || PyTuple_Check(data.ptr())) {
      // Parts of one message (a pickle and its out-of-band buffers).
      sent = send_gathered(get(), data.ptr(), deadline_from(timeout), &sent_id);
    } else if (PyBytes_Check(data.ptr())) {
      // The common case (a pickle): no buffer request needed.
      sent = send_message(get(),
                          std::span(reinterpret_cast<const std::byte*>(PyBytes_AS_STRING(data.ptr())),
                                    static_cast<std::size_t>(PyBytes_GET_SIZE(data.ptr()))),
                          deadline_from(timeout), &sent_id);
    } else {
      Py_buffer view;
      if (PyObject_GetBuffer(data.ptr(), &view, PyBUF_C_CONTIGUOUS) != 0) throw py::error_already_set();
      try {
        sent = send_message(get(), std::span(static_cast<const std::byte*>(view.buf), static_cast<std::size_t>(view.len)),
                            deadline_from(timeout), &sent_id);
      } catch (...) {
        PyBuffer_Release(&view);
        throw;
      }
      PyBuffer_Release(&view);
    }
    if (sent < 0) throw py::error_already_set();
    if (sent == 0) return py::bool_(false);
    return py::int_(sent_id);
  }

  // The message (bytes, or a buffer over a large block when `in_place`),
  // or None on timeout.
  py::object recv(const py::object& timeout, bool in_place, const py::object& receipt_spec) {
    ipc::channel& ch = get();
    note_calling_thread();
    receipt_slot receipt(receipt_spec);
    ipc::message msg;
    const std::optional<ipc::wait_result> result = blocking_call(
        python_timeout{timeout.ptr()}, [&](const ipc::deadline& d) { return ch.recv(msg, d, receipt.word); });
    if (!result) throw py::error_already_set();
    switch (*result) {
      case ipc::wait_result::ok: break;
      case ipc::wait_result::timed_out: return py::none();
      case ipc::wait_result::closed:
        PyErr_SetString(PyExc_EOFError, "");
        throw py::error_already_set();
      default: throw std::system_error(make_error_code(errc::corrupt_frame), "unexpected channel outcome");
    }
    if (in_place && msg.is_block()) {
      return py::cast(block_view{msg.release_block()});
    }
    const auto bytes = msg.bytes();
    return py::reinterpret_steal<py::object>(
        PyBytes_FromStringAndSize(reinterpret_cast<const char*>(bytes.data()), static_cast<Py_ssize_t>(bytes.size())));
  }

  // True when a message is ready or the channel is closed (recv will not wait).
  bool poll(const py::object& timeout) {
    ipc::channel& ch = get();
    note_calling_thread();
    const std::optional<ipc::wait_result> result =
        blocking_call(python_timeout{timeout.ptr()}, [&](const ipc::deadline& d) { return ch.poll(d); });
    if (!result) throw py::error_already_set();
    return *result == ipc::wait_result::ok || *result == ipc::wait_result::closed;
  }

  // Threads blocked in this endpoint (recv, poll, a bounded send,
  // receive_fds) wake and raise OSError('handle is closed'), unless
  // `wake_waiters` is false; the endpoint's state outlives their calls.
  void close(bool wake_waiters) noexcept { ch_.close(wake_waiters); }

  bool closed() const noexcept { return !ch_; }

  // The endpoint itself, for native callers (queue_port.cpp): empty once
  // closed, at the same address for as long as this handle lives.
  ipc::channel* endpoint() noexcept { return &ch_; }

 private:
  ipc::channel ch_;
};

// Bytes and descriptors sent into the peer of a Pipe end's socket
// (reduction.send_handle, or raw writes), read past the doorbell's markers.
py::object receive_fds(channel_handle& h, std::size_t size, std::size_t maxfds, const py::object& timeout) {
  ipc::channel& ch = h.get();
  note_calling_thread();
  if (ch.socket_doorbell() == nullptr) {
    PyErr_SetString(PyExc_OSError, "this connection has no socket");
    throw py::error_already_set();
  }
  if (size == 0) throw py::value_error("size must be positive");
  const ipc::deadline until = deadline_from(timeout);
  std::string data(size, '\0');
  std::vector<int> fds;
  long got = -1;
  // Released from the first attempt: a socket read is a system call.
  const std::optional<ipc::wait_result> result = blocking_call(
      until,
      [&](const ipc::deadline& d) {
        ipc::wait_result outcome = ipc::wait_result::ok;
        got = ch.receive_socket(std::as_writable_bytes(std::span(data.data(), data.size())), maxfds, fds, d, outcome);
        return got >= 0 ? ipc::wait_result::ok : outcome;
      },
      first_attempt::released);
  if (!result) {
    for (int fd : fds) ::close(fd);
    throw py::error_already_set();
  }
  if (got < 0) return py::none();  // timed out
  data.resize(static_cast<std::size_t>(got));
  return py::make_tuple(py::bytes(data), py::cast(fds));
}

}  // namespace

PyObject* block_object(ipc::large_block block) {
  try {
    return py::cast(block_view{std::move(block)}).release().ptr();
  } catch (py::error_already_set& e) {
    e.restore();
    return nullptr;
  }
}

ipc::channel* channel_of(PyObject* handle) {
  try {
    return py::cast<channel_handle&>(py::handle(handle)).endpoint();
  } catch (const py::cast_error&) {
    PyErr_Format(PyExc_TypeError, "expected an _mphost.Channel, not %.200s", Py_TYPE(handle)->tp_name);
    return nullptr;
  }
}

void bind_channel(py::module_& m) {
  py::class_<block_view>(m, "Block", py::buffer_protocol(),
                         "A large message mapped in place; read it through memoryview().")
      .def_buffer([](block_view& b) {
        auto bytes = b.block.bytes();
        // Writable: a received block is this process's alone, and objects
        // unpickled over it (out-of-band buffers) are as mutable as copies.
        return py::buffer_info(bytes.data(), 1, py::format_descriptor<unsigned char>::format(), 1,
                               {static_cast<py::ssize_t>(bytes.size())}, {1}, /*readonly=*/false);
      })
      .def("__len__", [](const block_view& b) { return b.block.size(); });

  py::class_<channel_handle>(m, "Channel", "An endpoint of a shared-memory channel.")
      .def_static(
          "create",
          [](std::size_t capacity, bool unbounded, const std::string& role) {
            ipc::channel_options options;
            options.capacity = capacity;
            options.unbounded = unbounded;
            return std::make_unique<channel_handle>(ipc::channel::create(options, role_from(role)));
          },
          py::arg("capacity") = 256 * 1024, py::arg("unbounded") = false, py::arg("role") = "both")
      .def_static(
          "open",
          [](const std::string& name, const std::string& role, std::uint64_t ticket) {
            return std::make_unique<channel_handle>(ticket != 0 ? ipc::channel::open(name, role_from(role), ticket)
                                                                : ipc::channel::open(name, role_from(role)));
          },
          py::arg("name"), py::arg("role"), py::arg("ticket") = 0)
      .def_property_readonly("name", [](channel_handle& h) { return h.get().name(); })
      .def_property_readonly("role", [](channel_handle& h) { return role_name(h.get().role()); })
      .def_property_readonly("unbounded", [](channel_handle& h) { return h.get().unbounded(); })
      .def_property_readonly("closed", &channel_handle::closed)
      .def("send", &channel_handle::send, py::arg("data"), py::arg("timeout") = py::none(),
           "Send one message (bytes-like, or a list or tuple of bytes-like parts sent as their "
           "concatenation). Returns the message's identity, a nonzero int unique in the channel "
           "(true, as this returned before), or False if the timeout passed first. "
           "BrokenPipeError when no reader is left.")
      .def("recv", &channel_handle::recv, py::arg("timeout") = py::none(), py::arg("in_place") = false,
           py::arg("receipt") = py::none(),
           "The next message as bytes (a Block over shared memory for large ones with in_place), "
           "None on timeout. EOFError when empty and no writer is left. receipt=(buffer, byte_offset): "
           "8 writable, 8-byte aligned bytes (shared memory, e.g. a RawArray) into which the identity "
           "send() returned for the message is stored (native-endian uint64, release ordering) as soon "
           "as the message is taken, before it is copied out; ValueError if they are not.")
      .def("poll", &channel_handle::poll, py::arg("timeout") = 0.0)
      .def("ready", [](channel_handle& h) { return !h.closed() && h.get().ready_now(); },
           "Whether recv would not wait now, from shared memory alone (no system call): a dead writer "
           "or a socket at end of file is left to poll() and fileno().")
      .def("fileno", [](channel_handle& h) { return h.get().fileno(); })
      .def(
          "hand_over",
          [](channel_handle& h, const std::string& role) { return h.get().hand_over(role_from(role)); },
          py::arg("role"), "Reserve an endpoint for a process that will open this channel with the ticket.")
      .def("withdraw_hand_overs", [](channel_handle& h) { if (!h.closed()) h.get().withdraw_hand_overs(); },
           "Withdraw this process's untaken hand-over tickets (at exit).")
      .def("endpoints",
           [](channel_handle& h) {
             const auto counts = h.get().endpoints();
             return py::make_tuple(counts.readers, counts.writers);
           })
      .def("queued_bytes", [](channel_handle& h) { return h.get().queued_bytes(); })
      .def("prompt_peer", [](channel_handle& h, bool on) { h.get().prompt_peer(on); }, py::arg("on") = true,
           "Say that this end talks with one peer in turns (requests and replies): recv spins longer before yielding.")
      .def(
          "use_socket",
          [](channel_handle& h, int watch, int ring) {
            h.get().set_doorbell(ipc::doorbell::over_socket(watch, ring));
          },
          py::arg("watch"), py::arg("ring"),
          "Make fileno() the socket `watch` (a Pipe end), rung through `ring`, a duplicate of the peer's "
          "end, or -1 for a write-only end. Takes ownership of both descriptors.")
      .def(
          "ring_through", [](channel_handle& h, int fd) { h.get().ring_through(fd); }, py::arg("fd"),
          "Make the socket fd (not taken over) the one this channel's writers write ring markers into, in "
          "every process, through whatever descriptor of it their process holds (a Pipe's peer socket).")
      .def("socket_fds",
           [](channel_handle& h) -> py::object {
             ipc::doorbell* bell = h.get().socket_doorbell();
             if (bell == nullptr) return py::none();
             return py::make_tuple(bell->fd(), bell->ring_fd());
           },
           "(socket, ring) given with use_socket, or None.")
      .def("receive_fds", &receive_fds, py::arg("size"), py::arg("maxfds"), py::arg("timeout") = py::none(),
           "Read up to `size` bytes from the socket given with use_socket, skipping ring markers, with up to "
           "`maxfds` descriptors: (data, [fds]), or None on timeout.")
      .def("close", &channel_handle::close, py::arg("wake_waiters") = true,
           "Close this endpoint. Threads blocked in it raise OSError('handle is closed'), unless "
           "wake_waiters is False (at exit: they keep waiting, detached).");
}

}  // namespace mphost::embed
