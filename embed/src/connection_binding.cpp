// `_mphost.stream_*`: whole messages of multiprocessing.connection's
// socket/pipe format, over ipc::stream_frame, for connection.Connection (and
// the prefix codec alone, for the manager transport that buffers its own
// reads).
//
//   stream_send(fd, data, short_limit=INT32_MAX)
//       Writes one message: `data` is a bytes-like object, or a list or
//       tuple of them (a pickle and its out-of-band buffers), sent as one
//       message of their concatenation without joining them.
//   stream_recv(fd, maxlength=None) -> bytes | None
//       Reads one message. None when its length is above maxlength (only the
//       prefix was read) or its prefix is corrupt: the caller says "bad
//       message length" and stops reading from the stream.
//   stream_recv_into(fd, buffer, offset) -> int | bytes | None
//       Reads one message into buffer[offset:]: its length; or, when it does
//       not fit, the whole message as bytes (for BufferTooShort); or None
//       for a corrupt prefix.
//   stream_prefix(length, short_limit=INT32_MAX) -> bytes
//   stream_prefix_at(buffer, start, end) -> (size, length | None)
//       The prefix of buffer[start:end]: its whole size (4 or 12) and the
//       message's length, None while the bytes there are not all of it.
//       OSError("bad message length") for a corrupt one.
//   pickle_bytearray_overrun(data) -> (offset, length, allocatable) | None
//       The first BYTEARRAY8 opcode the unpickler would reach in `data` that
//       declares more bytes than follow it (runtime/pickle_scan.hpp), and
//       whether an allocation of that many bytes succeeds now (the one the
//       unpickler would try first); None when there is none.
//
// Every read and write runs with the GIL released, through blocking_call
// (an interrupting signal runs the Python handlers; the message goes on
// unless one raised). Errors: end of file before a message is EOFError, in
// the middle of one OSError("got end of file during message"), as the
// stdlib raises them; errno failures map through errors.cpp (BrokenPipeError...).
#include <pybind11/pybind11.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstring>
#include <optional>
#include <system_error>
#include <vector>

#include "mphost/embed/bindings.hpp"
#include "mphost/embed/blocking_call.hpp"
#include "mphost/ipc/error.hpp"
#include "mphost/ipc/stream_frame.hpp"
#include "mphost/runtime/pickle_scan.hpp"

namespace mphost::embed {
namespace {

// A body up to this size is read in the same GIL release as its prefix,
// into a buffer on the stack, then copied into the bytes object.
constexpr std::size_t read_with_prefix = 16 * 1024;
// Storage for a larger body is reserved up to this size at once; beyond
// it, it grows as the data arrives (a corrupt length must not reserve
// gigabytes).
constexpr std::uint64_t reserve_at_once = 64u << 20;

bool int_arg(PyObject* obj, long long& out) {
  out = PyLong_AsLongLong(obj);
  return !(out == -1 && PyErr_Occurred());
}

bool fd_arg(PyObject* obj, int& fd) {
  fd = PyObject_AsFileDescriptor(obj);
  return fd >= 0;
}

bool short_limit_arg(PyObject* const* args, Py_ssize_t nargs, Py_ssize_t at, std::uint64_t& limit) {
  limit = ipc::stream_short_limit;
  if (nargs <= at) return true;
  long long value = 0;
  if (!int_arg(args[at], value)) return false;
  limit = value < 0 ? 0 : static_cast<std::uint64_t>(value);
  return true;
}

bool arity(const char* name, Py_ssize_t nargs, Py_ssize_t low, Py_ssize_t high) {
  if (nargs >= low && nargs <= high) return true;
  PyErr_Format(PyExc_TypeError, "%s() takes %zd to %zd arguments (%zd given)", name, low, high, nargs);
  return false;
}

// Buffers exported for the length of a call.
class held_buffers {
 public:
  held_buffers() = default;
  held_buffers(const held_buffers&) = delete;
  held_buffers& operator=(const held_buffers&) = delete;
  ~held_buffers() {
    for (Py_buffer& view : views_) PyBuffer_Release(&view);
  }

  bool add(PyObject* obj) {
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) != 0) return false;
    views_.push_back(view);
    spans_.emplace_back(static_cast<const std::byte*>(view.buf), static_cast<std::size_t>(view.len));
    return true;
  }

  std::span<const std::span<const std::byte>> spans() const noexcept { return spans_; }

 private:
  std::vector<Py_buffer> views_;
  std::vector<std::span<const std::byte>> spans_;
};

// One message being read from a descriptor.
struct reading {
  ipc::fd_stream in;
  ipc::stream_reader reader;
  std::error_code failure;  // a corrupt prefix or a cut message, caught

  explicit reading(int fd) : in(fd) {}

  // Runs `step` (a reader call) with the GIL released until it is neither
  // interrupted nor failed; nullopt with the Python error set otherwise.
  template <class Step>
  std::optional<ipc::wait_result> run(Step&& step) {
    auto result = blocking_call(
        ipc::deadline::infinite(),
        [&](const ipc::deadline&) {
          try {
            return step();
          } catch (const std::system_error& e) {
            if (e.code() != make_error_code(errc::corrupt_frame) && e.code() != make_error_code(errc::peer_closed)) {
              throw;
            }
            failure = e.code();
            return ipc::wait_result::ok;
          }
        },
        first_attempt::released);
    if (!result) return std::nullopt;
    if (failure == make_error_code(errc::peer_closed)) {
      // The stdlib's words, on a plain OSError (not EOFError: the peer
      // went away in the middle of a message).
      PyErr_SetString(PyExc_OSError, "got end of file during message");
      return std::nullopt;
    }
    if (*result == ipc::wait_result::closed) {
      PyErr_SetNone(PyExc_EOFError);
      return std::nullopt;
    }
    return result;
  }

  bool corrupt() const noexcept { return failure == make_error_code(errc::corrupt_frame); }
};

// The rest of the body as a new bytes object; nullptr with the error set.
PyObject* body_as_bytes(reading& r) {
  const std::uint64_t length = r.reader.body_left();
  if (length > static_cast<std::uint64_t>(PY_SSIZE_T_MAX)) return PyErr_NoMemory();
  std::uint64_t room = std::min(length, reserve_at_once);
  PyObject* out = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(room));
  if (out == nullptr) return nullptr;
  std::uint64_t filled = 0;
  while (filled < length) {
    if (filled == room) {
      room = std::min(length, 2 * room);
      if (_PyBytes_Resize(&out, static_cast<Py_ssize_t>(room)) != 0) return nullptr;
    }
    auto* base = reinterpret_cast<std::byte*>(PyBytes_AS_STRING(out));
    r.reader.target(std::span(base + filled, static_cast<std::size_t>(room - filled)));
    if (!r.run([&] { return r.reader.read_body(r.in); })) {
      Py_DECREF(out);
      return nullptr;
    }
    filled = room;
  }
  return out;
}

PyObject* stream_send(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  int fd = -1;
  std::uint64_t limit = 0;
  if (!arity("stream_send", nargs, 2, 3) || !fd_arg(args[0], fd) || !short_limit_arg(args, nargs, 2, limit)) {
    return nullptr;
  }
  held_buffers parts;
  PyObject* data = args[1];
  if (PyList_Check(data) || PyTuple_Check(data)) {
    PyObject* seq = PySequence_Fast(data, "parts");
    if (seq == nullptr) return nullptr;
    const Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    bool ok = true;
    for (Py_ssize_t i = 0; ok && i < count; ++i) ok = parts.add(PySequence_Fast_GET_ITEM(seq, i));
    Py_DECREF(seq);
    if (!ok) return nullptr;
  } else if (!parts.add(data)) {
    return nullptr;
  }
  ipc::fd_stream out(fd);
  ipc::stream_writer writer(parts.spans(), limit);
  auto result = blocking_call(
      ipc::deadline::infinite(), [&](const ipc::deadline&) { return writer.write(out); }, first_attempt::released);
  if (!result) return nullptr;
  Py_RETURN_NONE;
}

PyObject* stream_recv(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  int fd = -1;
  if (!arity("stream_recv", nargs, 1, 2) || !fd_arg(args[0], fd)) return nullptr;
  std::optional<std::uint64_t> maxlength;
  if (nargs > 1 && args[1] != Py_None) {
    long long value = 0;
    if (!int_arg(args[1], value)) return nullptr;
    maxlength = value < 0 ? 0 : static_cast<std::uint64_t>(value);
  }
  reading r(fd);
  // Left uninitialized: only the bytes read are used.
  std::array<std::byte, read_with_prefix> small;
  std::size_t small_length = 0;
  bool in_small = false;
  const auto prefix_and_small_body = [&] {
    if (!r.reader.has_length()) {
      const ipc::wait_result got = r.reader.read_prefix(r.in);
      if (got != ipc::wait_result::ok) return got;
      const std::uint64_t length = r.reader.length();
      if (length > read_with_prefix || (maxlength && length > *maxlength)) return got;
      small_length = static_cast<std::size_t>(length);
      r.reader.target(std::span(small).first(small_length));
      in_small = true;
    }
    return r.reader.read_body(r.in);
  };
  if (!r.run(prefix_and_small_body)) return nullptr;
  if (r.corrupt() || (maxlength && r.reader.length() > *maxlength)) Py_RETURN_NONE;
  if (in_small) {
    return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(small.data()),
                                     static_cast<Py_ssize_t>(small_length));
  }
  return body_as_bytes(r);
}

PyObject* stream_recv_into(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  int fd = -1;
  long long offset = 0;
  if (!arity("stream_recv_into", nargs, 3, 3) || !fd_arg(args[0], fd) || !int_arg(args[2], offset)) return nullptr;
  Py_buffer view;
  if (PyObject_GetBuffer(args[1], &view, PyBUF_WRITABLE) != 0) return nullptr;
  PyObject* out = nullptr;
  if (offset < 0 || offset > view.len) {
    PyErr_SetString(PyExc_ValueError, "offset out of range");
  } else {
    reading r(fd);
    if (r.run([&] { return r.reader.read_prefix(r.in); })) {
      const std::uint64_t length = r.reader.length();
      if (r.corrupt()) {
        out = Py_NewRef(Py_None);
      } else if (length > static_cast<std::uint64_t>(view.len - offset)) {
        out = body_as_bytes(r);
      } else {
        auto* base = static_cast<std::byte*>(view.buf) + offset;
        r.reader.target(std::span(base, static_cast<std::size_t>(length)));
        if (r.run([&] { return r.reader.read_body(r.in); })) {
          out = PyLong_FromUnsignedLongLong(length);
        }
      }
    }
  }
  PyBuffer_Release(&view);
  return out;
}

PyObject* stream_prefix(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  long long length = 0;
  std::uint64_t limit = 0;
  if (!arity("stream_prefix", nargs, 1, 2) || !int_arg(args[0], length) || !short_limit_arg(args, nargs, 1, limit)) {
    return nullptr;
  }
  if (length < 0) {
    PyErr_SetString(PyExc_ValueError, "negative length");
    return nullptr;
  }
  const ipc::stream_prefix prefix = ipc::encode_stream_prefix(static_cast<std::uint64_t>(length), limit);
  return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(prefix.bytes.data()),
                                   static_cast<Py_ssize_t>(prefix.size));
}

PyObject* stream_prefix_at(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  long long start = 0, end = 0;
  if (!arity("stream_prefix_at", nargs, 3, 3) || !int_arg(args[1], start) || !int_arg(args[2], end)) return nullptr;
  Py_buffer view;
  if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) != 0) return nullptr;
  end = std::min<long long>(end, view.len);
  if (start < 0 || start > end) {
    PyBuffer_Release(&view);
    PyErr_SetString(PyExc_ValueError, "start out of range");
    return nullptr;
  }
  ipc::decoded_prefix prefix;
  bool corrupt = false;
  try {
    prefix = ipc::decode_stream_prefix(
        std::span(static_cast<const std::byte*>(view.buf) + start, static_cast<std::size_t>(end - start)));
  } catch (const std::system_error&) {
    corrupt = true;
  }
  PyBuffer_Release(&view);
  if (corrupt) {
    PyErr_SetString(PyExc_OSError, "bad message length");
    return nullptr;
  }
  if (!prefix.complete) return Py_BuildValue("(nO)", static_cast<Py_ssize_t>(prefix.size), Py_None);
  return Py_BuildValue("(nK)", static_cast<Py_ssize_t>(prefix.size), static_cast<unsigned long long>(prefix.length));
}

PyObject* pickle_bytearray_overrun(PyObject* /*module*/, PyObject* data) {
  Py_buffer view;
  if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) != 0) {
    PyErr_Clear();  // not a flat buffer: pickle.loads has its own say
    Py_RETURN_NONE;
  }
  const auto found = runtime::pickle::find_overrunning_bytearray(
      std::span(static_cast<const std::byte*>(view.buf), static_cast<std::size_t>(view.len)));
  PyBuffer_Release(&view);
  if (!found) Py_RETURN_NONE;
  // The unpickler asks the raw allocator for length + 1 bytes (the bytearray
  // and its trailing NUL); PY_SSIZE_T_MAX itself is refused without asking.
  bool allocatable = false;
  if (found->length < static_cast<std::uint64_t>(PY_SSIZE_T_MAX)) {
    void* probe = PyMem_RawMalloc(static_cast<std::size_t>(found->length) + 1);
    allocatable = probe != nullptr;
    PyMem_RawFree(probe);
  }
  return Py_BuildValue("(nKO)", static_cast<Py_ssize_t>(found->offset),
                       static_cast<unsigned long long>(found->length), allocatable ? Py_True : Py_False);
}

template <auto Fn>
PyCFunction fastcall() {
  return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(Fn));
}

PyMethodDef stream_methods[] = {
    {"stream_send", fastcall<stream_send>(), METH_FASTCALL,
     "stream_send(fd, data, short_limit=INT32_MAX): write one message (bytes-like, or a list of parts)."},
    {"stream_recv", fastcall<stream_recv>(), METH_FASTCALL,
     "stream_recv(fd, maxlength=None): one message as bytes; None if too long or corrupt."},
    {"stream_recv_into", fastcall<stream_recv_into>(), METH_FASTCALL,
     "stream_recv_into(fd, buffer, offset): the length read into buffer[offset:]; the message as bytes if it "
     "does not fit; None if corrupt."},
    {"stream_prefix", fastcall<stream_prefix>(), METH_FASTCALL,
     "stream_prefix(length, short_limit=INT32_MAX): the bytes that announce a message of `length` bytes."},
    {"stream_prefix_at", fastcall<stream_prefix_at>(), METH_FASTCALL,
     "stream_prefix_at(buffer, start, end): (prefix size, message length or None while incomplete)."},
    {"pickle_bytearray_overrun", pickle_bytearray_overrun, METH_O,
     "pickle_bytearray_overrun(data): (offset, length, allocatable) of the first BYTEARRAY8 longer than the "
     "data left, or None."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

void bind_connection(pybind11::module_& m) {
  if (PyModule_AddFunctions(m.ptr(), stream_methods) != 0) throw pybind11::error_already_set();
}

}  // namespace mphost::embed
