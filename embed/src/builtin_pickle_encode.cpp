// The builtin codec's encoder (builtin_pickle.hpp): pickle protocol 4 for
// graphs of exact builtin objects.
//
// It follows the C pickler's choices opcode by opcode (which opcode for
// which int, when a MEMOIZE is written, how lists and dicts are batched, how
// a tuple that contains itself is written), so its output is the same bytes;
// the tests compare the two on generated graphs.
#include <cstdint>
#include <cstring>
#include <vector>

#include "mphost/embed/builtin_pickle.hpp"
#include "mphost/runtime/pickle_writer.hpp"

namespace mphost::embed::builtin_pickle {
namespace {

namespace pickle = runtime::pickle;
constexpr int max_depth = 64;
constexpr auto batch_size = static_cast<Py_ssize_t>(pickle::batch_size);
constexpr std::uint32_t memo_slots = 1024;
constexpr std::uint32_t max_memo = memo_slots / 2;

// Object -> memo index, for one encode at a time per thread. Entries of
// earlier encodes are told apart by their generation, so nothing is cleared.
struct memo_table {
  struct entry {
    PyObject* key;
    std::uint32_t index;
    std::uint32_t generation;
  };
  entry slots[memo_slots] = {};
  std::uint32_t generation = 0;
  std::uint32_t used = 0;

  void reset() noexcept {
    used = 0;
    if (++generation == 0) {
      std::memset(slots, 0, sizeof slots);
      generation = 1;
    }
  }
  static std::uint32_t hash(PyObject* p) noexcept {
    auto x = reinterpret_cast<std::uintptr_t>(p) >> 4;
    x *= 0x9E3779B97F4A7C15ull;
    return static_cast<std::uint32_t>(x >> 40) & (memo_slots - 1);
  }
  // The index of `p`, or -1.
  long find(PyObject* p) const noexcept {
    for (std::uint32_t i = hash(p);; i = (i + 1) & (memo_slots - 1)) {
      const entry& e = slots[i];
      if (e.generation != generation) return -1;
      if (e.key == p) return e.index;
    }
  }
  bool put(PyObject* p) noexcept {
    if (used == max_memo) return false;
    std::uint32_t i = hash(p);
    while (slots[i].generation == generation) i = (i + 1) & (memo_slots - 1);
    slots[i] = {p, used++, generation};
    return true;
  }
};

class encoder {
 public:
  encoder(std::string& out, memo_table& memo) : w_(out), memo_(memo) {}

  bool run(PyObject* obj) {
    w_.start();
    memo_.reset();
    if (!save(obj, 0)) return false;
    if (w_.body_size() + 1 > pickle::max_frame) return false;
    w_.finish();
    return true;
  }

 private:
  bool too_big() const noexcept { return w_.body_size() > pickle::max_frame; }

  bool memoize(PyObject* obj) {
    if (!memo_.put(obj)) return false;
    w_.memoize();
    return true;
  }
  void memo_get(long index) { w_.get(static_cast<std::uint32_t>(index)); }

  bool save(PyObject* obj, int depth) {
    PyTypeObject* type = Py_TYPE(obj);
    if (obj == Py_None) {
      w_.none();
      return true;
    }
    if (obj == Py_True || obj == Py_False) {
      w_.boolean(obj == Py_True);
      return true;
    }
    if (type == &PyLong_Type) return save_long(obj);
    if (type == &PyFloat_Type) {
      w_.real(PyFloat_AS_DOUBLE(obj));
      return true;
    }
    const long index = memo_.find(obj);
    if (index >= 0) {
      memo_get(index);
      return true;
    }
    if (too_big() || depth > max_depth) return false;
    if (type == &PyBytes_Type) return save_bytes(obj);
    if (type == &PyUnicode_Type) return save_str(obj);
    if (type == &PyDict_Type) return save_dict(obj, depth);
    if (type == &PyList_Type) return save_list(obj, depth);
    if (type == &PyTuple_Type) return save_tuple(obj, depth);
    return false;
  }

  bool save_long(PyObject* obj) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (overflow == 0 && !(v == -1 && PyErr_Occurred())) {
      w_.integer(v);
      return true;
    }
    PyErr_Clear();
    // Beyond 64 bits: the shortest little-endian two's complement.
    const std::size_t bits = _PyLong_NumBits(obj);
    if (bits == static_cast<std::size_t>(-1)) {
      PyErr_Clear();
      return false;
    }
    std::size_t n = (bits >> 3) + 1;
    if (n > 255) return false;
    unsigned char b[256];
    if (_PyLong_AsByteArray(reinterpret_cast<PyLongObject*>(obj), b, n, 1, 1) != 0) {
      PyErr_Clear();
      return false;
    }
    if (Py_SIZE(obj) < 0 && n > 1 && b[n - 1] == 0xff && (b[n - 2] & 0x80) != 0) --n;
    w_.long1({b, n});
    return true;
  }

  bool save_bytes(PyObject* obj) {
    const Py_ssize_t size = PyBytes_GET_SIZE(obj);
    if (static_cast<std::size_t>(size) > pickle::max_frame) return false;
    w_.binary({PyBytes_AS_STRING(obj), static_cast<std::size_t>(size)});
    return memoize(obj);
  }

  bool save_str(PyObject* obj) {
    Py_ssize_t size = 0;
    const char* data = PyUnicode_AsUTF8AndSize(obj, &size);
    if (data == nullptr) {  // lone surrogates: the pickler's own business
      PyErr_Clear();
      return false;
    }
    if (static_cast<std::size_t>(size) > pickle::max_frame) return false;
    w_.text({data, static_cast<std::size_t>(size)});
    return memoize(obj);
  }

  bool save_tuple(PyObject* obj, int depth) {
    const Py_ssize_t n = PyTuple_GET_SIZE(obj);
    if (n == 0) {
      w_.empty_tuple();
      return true;
    }
    if (n > 3) w_.mark();
    for (Py_ssize_t i = 0; i < n; ++i) {
      if (!save(PyTuple_GET_ITEM(obj, i), depth + 1)) return false;
    }
    const long index = memo_.find(obj);
    if (index >= 0) {
      // The tuple was reached again through one of its items and is in the
      // memo now: drop what was pushed, fetch it.
      if (n > 3) {
        w_.pop_mark();
      } else {
        w_.pop(static_cast<std::size_t>(n));
      }
      memo_get(index);
      return true;
    }
    w_.tuple(static_cast<std::size_t>(n));
    return memoize(obj);
  }

  bool save_list(PyObject* obj, int depth) {
    w_.empty_list();
    if (!memoize(obj)) return false;
    const Py_ssize_t n = PyList_GET_SIZE(obj);
    if (n == 0) return true;
    if (n == 1) {
      if (!save(PyList_GET_ITEM(obj, 0), depth + 1)) return false;
      w_.append();
      return true;
    }
    Py_ssize_t i = 0;
    do {
      w_.mark();
      Py_ssize_t batch = 0;
      while (i < PyList_GET_SIZE(obj)) {
        if (!save(PyList_GET_ITEM(obj, i), depth + 1)) return false;
        ++i;
        if (++batch == batch_size) break;
      }
      w_.appends();
    } while (i < PyList_GET_SIZE(obj));
    return true;
  }

  bool save_dict(PyObject* obj, int depth) {
    w_.empty_dict();
    if (!memoize(obj)) return false;
    const Py_ssize_t n = PyDict_GET_SIZE(obj);
    if (n == 0) return true;
    Py_ssize_t pos = 0;
    PyObject* key;
    PyObject* value;
    if (n == 1) {
      PyDict_Next(obj, &pos, &key, &value);
      if (!save(key, depth + 1) || !save(value, depth + 1)) return false;
      w_.setitem();
      return true;
    }
    Py_ssize_t batch;
    do {
      batch = 0;
      w_.mark();
      while (PyDict_Next(obj, &pos, &key, &value)) {
        if (!save(key, depth + 1) || !save(value, depth + 1)) return false;
        if (++batch == batch_size) break;
      }
      w_.setitems();
    } while (batch == batch_size);
    return true;
  }

  pickle::writer w_;
  memo_table& memo_;
};

}  // namespace

bool encode(PyObject* obj, std::string& out) {
  thread_local memo_table memo;
  return encoder(out, memo).run(obj);
}

}  // namespace mphost::embed::builtin_pickle
