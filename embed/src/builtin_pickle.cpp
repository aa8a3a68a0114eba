// Pickle protocol 4 for graphs of exact builtin objects (builtin_pickle.hpp).
//
// The encoder follows the C pickler's choices opcode by opcode (which opcode
// for which int, when a MEMOIZE is written, how lists and dicts are batched,
// how a tuple that contains itself is written), so its output is the same
// bytes; the tests compare the two on generated graphs.
#include "mphost/embed/builtin_pickle.hpp"

#include <cstdint>
#include <cstring>
#include <vector>

namespace mphost::embed::builtin_pickle {
namespace {

// Opcodes (pickle protocol 4).
constexpr char op_proto = '\x80';
constexpr char op_frame = '\x95';
constexpr char op_stop = '.';
constexpr char op_none = 'N';
constexpr char op_true = '\x88';
constexpr char op_false = '\x89';
constexpr char op_binint = 'J';
constexpr char op_binint1 = 'K';
constexpr char op_binint2 = 'M';
constexpr char op_long1 = '\x8a';
constexpr char op_binfloat = 'G';
constexpr char op_short_binunicode = '\x8c';
constexpr char op_binunicode = 'X';
constexpr char op_short_binbytes = 'C';
constexpr char op_binbytes = 'B';
constexpr char op_empty_tuple = ')';
constexpr char op_tuple1 = '\x85';
constexpr char op_tuple2 = '\x86';
constexpr char op_tuple3 = '\x87';
constexpr char op_tuple = 't';
constexpr char op_mark = '(';
constexpr char op_pop = '0';
constexpr char op_pop_mark = '1';
constexpr char op_empty_list = ']';
constexpr char op_append = 'a';
constexpr char op_appends = 'e';
constexpr char op_empty_dict = '}';
constexpr char op_setitem = 's';
constexpr char op_setitems = 'u';
constexpr char op_memoize = '\x94';
constexpr char op_binget = 'h';
constexpr char op_long_binget = 'j';

constexpr int protocol = 4;
constexpr std::size_t header_size = 2 + 9;  // PROTO 4, FRAME <8 bytes>
// The C pickler ends a frame once it holds 64 KiB; staying below keeps one.
constexpr std::size_t max_body = 60 * 1024;
constexpr std::size_t frame_size_min = 4;
constexpr int max_depth = 64;
constexpr Py_ssize_t batch_size = 1000;  // items per APPENDS / SETITEMS
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
  encoder(std::string& out, memo_table& memo) : out_(out), memo_(memo) {}

  bool run(PyObject* obj) {
    out_.clear();
    out_.append(header_size, '\0');
    memo_.reset();
    if (!save(obj, 0)) return false;
    out_.push_back(op_stop);
    const std::size_t body = out_.size() - header_size;
    if (body > max_body) return false;
    out_[0] = op_proto;
    out_[1] = static_cast<char>(protocol);
    if (body >= frame_size_min) {
      out_[2] = op_frame;
      put_le(&out_[3], body, 8);
    } else {
      out_.erase(2, 9);
    }
    return true;
  }

 private:
  static void put_le(char* p, std::uint64_t v, int n) noexcept {
    for (int i = 0; i < n; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  }
  void op(char c) { out_.push_back(c); }
  void le(std::uint64_t v, int n) {
    char b[8];
    put_le(b, v, n);
    out_.append(b, static_cast<std::size_t>(n));
  }
  bool too_big() const noexcept { return out_.size() > header_size + max_body; }

  bool memoize(PyObject* obj) {
    if (!memo_.put(obj)) return false;
    op(op_memoize);
    return true;
  }
  void memo_get(long index) {
    if (index < 256) {
      op(op_binget);
      out_.push_back(static_cast<char>(index));
    } else {
      op(op_long_binget);
      le(static_cast<std::uint64_t>(index), 4);
    }
  }

  bool save(PyObject* obj, int depth) {
    PyTypeObject* type = Py_TYPE(obj);
    if (obj == Py_None) {
      op(op_none);
      return true;
    }
    if (obj == Py_True || obj == Py_False) {
      op(obj == Py_True ? op_true : op_false);
      return true;
    }
    if (type == &PyLong_Type) return save_long(obj);
    if (type == &PyFloat_Type) {
      char b[9];
      b[0] = op_binfloat;
      if (PyFloat_Pack8(PyFloat_AS_DOUBLE(obj), b + 1, 0) != 0) {
        PyErr_Clear();
        return false;
      }
      out_.append(b, sizeof b);
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
    if (overflow == 0 && v >= INT32_MIN && v <= INT32_MAX) {
      const auto u = static_cast<std::uint32_t>(v);
      if ((u >> 16) != 0) {
        op(op_binint);
        le(u, 4);
      } else if ((u >> 8) != 0) {
        op(op_binint2);
        le(u, 2);
      } else {
        op(op_binint1);
        out_.push_back(static_cast<char>(u));
      }
      return true;
    }
    PyErr_Clear();
    // LONG1: the shortest little-endian two's complement.
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
    op(op_long1);
    out_.push_back(static_cast<char>(n));
    out_.append(reinterpret_cast<const char*>(b), n);
    return true;
  }

  bool save_bytes(PyObject* obj) {
    const Py_ssize_t size = PyBytes_GET_SIZE(obj);
    if (static_cast<std::size_t>(size) > max_body) return false;
    if (size <= 0xff) {
      op(op_short_binbytes);
      out_.push_back(static_cast<char>(size));
    } else {
      op(op_binbytes);
      le(static_cast<std::uint64_t>(size), 4);
    }
    out_.append(PyBytes_AS_STRING(obj), static_cast<std::size_t>(size));
    return memoize(obj);
  }

  bool save_str(PyObject* obj) {
    Py_ssize_t size = 0;
    const char* data = PyUnicode_AsUTF8AndSize(obj, &size);
    if (data == nullptr) {  // lone surrogates: the pickler's own business
      PyErr_Clear();
      return false;
    }
    if (static_cast<std::size_t>(size) > max_body) return false;
    if (size <= 0xff) {
      op(op_short_binunicode);
      out_.push_back(static_cast<char>(size));
    } else {
      op(op_binunicode);
      le(static_cast<std::uint64_t>(size), 4);
    }
    out_.append(data, static_cast<std::size_t>(size));
    return memoize(obj);
  }

  bool save_tuple(PyObject* obj, int depth) {
    const Py_ssize_t n = PyTuple_GET_SIZE(obj);
    if (n == 0) {
      op(op_empty_tuple);
      return true;
    }
    if (n > 3) op(op_mark);
    for (Py_ssize_t i = 0; i < n; ++i) {
      if (!save(PyTuple_GET_ITEM(obj, i), depth + 1)) return false;
    }
    const long index = memo_.find(obj);
    if (index >= 0) {
      // The tuple was reached again through one of its items and is in the
      // memo now: drop what was pushed, fetch it.
      if (n > 3) {
        op(op_pop_mark);
      } else {
        out_.append(static_cast<std::size_t>(n), op_pop);
      }
      memo_get(index);
      return true;
    }
    static constexpr char by_size[] = {0, op_tuple1, op_tuple2, op_tuple3};
    op(n > 3 ? op_tuple : by_size[n]);
    return memoize(obj);
  }

  bool save_list(PyObject* obj, int depth) {
    op(op_empty_list);
    if (!memoize(obj)) return false;
    const Py_ssize_t n = PyList_GET_SIZE(obj);
    if (n == 0) return true;
    if (n == 1) {
      if (!save(PyList_GET_ITEM(obj, 0), depth + 1)) return false;
      op(op_append);
      return true;
    }
    Py_ssize_t i = 0;
    do {
      op(op_mark);
      Py_ssize_t batch = 0;
      while (i < PyList_GET_SIZE(obj)) {
        if (!save(PyList_GET_ITEM(obj, i), depth + 1)) return false;
        ++i;
        if (++batch == batch_size) break;
      }
      op(op_appends);
    } while (i < PyList_GET_SIZE(obj));
    return true;
  }

  bool save_dict(PyObject* obj, int depth) {
    op(op_empty_dict);
    if (!memoize(obj)) return false;
    const Py_ssize_t n = PyDict_GET_SIZE(obj);
    if (n == 0) return true;
    Py_ssize_t pos = 0;
    PyObject* key;
    PyObject* value;
    if (n == 1) {
      PyDict_Next(obj, &pos, &key, &value);
      if (!save(key, depth + 1) || !save(value, depth + 1)) return false;
      op(op_setitem);
      return true;
    }
    Py_ssize_t batch;
    do {
      batch = 0;
      op(op_mark);
      while (PyDict_Next(obj, &pos, &key, &value)) {
        if (!save(key, depth + 1) || !save(value, depth + 1)) return false;
        if (++batch == batch_size) break;
      }
      op(op_setitems);
    } while (batch == batch_size);
    return true;
  }

  std::string& out_;
  memo_table& memo_;
};

// ---- decoding ----

// A decoder's stacks, kept per thread so that a decode allocates only the
// objects it builds. Busy while a decode uses it: a decode started meanwhile
// on the same thread (from a finalizer run by the garbage collector) gets
// storage of its own.
struct scratch {
  std::vector<PyObject*> stack;
  std::vector<std::size_t> marks;
  std::vector<PyObject*> memo;
  bool busy = false;
};

class decoder {
 public:
  decoder(std::span<const std::byte> data, scratch& room)
      : p_(reinterpret_cast<const unsigned char*>(data.data())),
        end_(p_ + data.size()),
        room_(room),
        stack_(room.stack),
        marks_(room.marks),
        memo_(room.memo) {
    room_.busy = true;
  }

  ~decoder() {
    for (PyObject* o : stack_) Py_DECREF(o);
    for (PyObject* o : memo_) Py_DECREF(o);
    stack_.clear();
    marks_.clear();
    memo_.clear();
    room_.busy = false;
  }
  decoder(const decoder&) = delete;
  decoder& operator=(const decoder&) = delete;

  PyObject* run() {
    if (!take(2) || p_[-2] != static_cast<unsigned char>(op_proto) || p_[-1] < 2 || p_[-1] > 5) return nullptr;
    if (p_ < end_ && *p_ == static_cast<unsigned char>(op_frame)) {
      ++p_;
      if (!take(8)) return nullptr;
      if (le(p_ - 8, 8) != static_cast<std::uint64_t>(end_ - p_)) return nullptr;
    }
    while (p_ < end_) {
      const char c = static_cast<char>(*p_++);
      if (c == op_stop) {
        if (p_ != end_ || stack_.size() != 1 || !marks_.empty()) return nullptr;
        PyObject* result = stack_.back();
        stack_.pop_back();
        return result;
      }
      if (!step(c)) return nullptr;
    }
    return nullptr;
  }

 private:
  bool take(std::size_t n) noexcept {
    if (static_cast<std::size_t>(end_ - p_) < n) return false;
    p_ += n;
    return true;
  }
  static std::uint64_t le(const unsigned char* p, int n) noexcept {
    std::uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
    return v;
  }
  bool push(PyObject* o) {
    if (o == nullptr) return false;
    stack_.push_back(o);
    return true;
  }
  // Where the items above the innermost mark begin (the pickler's fence).
  std::size_t fence() const noexcept { return marks_.empty() ? 0 : marks_.back(); }
  // Removes the innermost mark; `from` is where its items begin.
  bool pop_mark(std::size_t& from) {
    if (marks_.empty()) return false;
    from = marks_.back();
    marks_.pop_back();
    return true;
  }
  bool sized(int width, Py_ssize_t& n) {
    if (!take(static_cast<std::size_t>(width))) return false;
    const std::uint64_t v = le(p_ - width, width);
    if (v > static_cast<std::uint64_t>(end_ - p_)) return false;
    n = static_cast<Py_ssize_t>(v);
    return true;
  }
  bool build_tuple(std::size_t from) {
    const std::size_t n = stack_.size() - from;
    PyObject* t = PyTuple_New(static_cast<Py_ssize_t>(n));
    if (t == nullptr) return false;
    for (std::size_t i = 0; i < n; ++i) PyTuple_SET_ITEM(t, static_cast<Py_ssize_t>(i), stack_[from + i]);
    stack_.resize(from);
    stack_.push_back(t);
    return true;
  }
  void drop_from(std::size_t from) {
    for (std::size_t i = from; i < stack_.size(); ++i) Py_DECREF(stack_[i]);
    stack_.resize(from);
  }

  bool step(char c) {
    Py_ssize_t n = 0;
    std::size_t from = 0;
    switch (c) {
      case op_none: return push(Py_NewRef(Py_None));
      case op_true: return push(Py_NewRef(Py_True));
      case op_false: return push(Py_NewRef(Py_False));
      case op_binint1:
        if (!take(1)) return false;
        return push(PyLong_FromLong(p_[-1]));
      case op_binint2:
        if (!take(2)) return false;
        return push(PyLong_FromLong(static_cast<long>(le(p_ - 2, 2))));
      case op_binint:
        if (!take(4)) return false;
        return push(PyLong_FromLong(static_cast<std::int32_t>(static_cast<std::uint32_t>(le(p_ - 4, 4)))));
      case op_long1:
        if (!sized(1, n)) return false;
        p_ += n;
        if (n == 0) return push(PyLong_FromLong(0));
        return push(_PyLong_FromByteArray(p_ - n, static_cast<std::size_t>(n), 1, 1));
      case op_binfloat: {
        if (!take(8)) return false;
        const double v = PyFloat_Unpack8(reinterpret_cast<const char*>(p_ - 8), 0);
        if (v == -1.0 && PyErr_Occurred()) return false;
        return push(PyFloat_FromDouble(v));
      }
      case op_short_binunicode:
      case op_binunicode:
        if (!sized(c == op_binunicode ? 4 : 1, n)) return false;
        p_ += n;
        return push(PyUnicode_DecodeUTF8(reinterpret_cast<const char*>(p_ - n), n, "surrogatepass"));
      case op_short_binbytes:
      case op_binbytes:
        if (!sized(c == op_binbytes ? 4 : 1, n)) return false;
        p_ += n;
        return push(PyBytes_FromStringAndSize(reinterpret_cast<const char*>(p_ - n), n));
      case op_empty_tuple: return push(PyTuple_New(0));
      case op_tuple1:
      case op_tuple2:
      case op_tuple3: {
        const std::size_t k = static_cast<std::size_t>(static_cast<unsigned char>(c) - 0x84);
        if (stack_.size() < k + fence()) return false;
        return build_tuple(stack_.size() - k);
      }
      case op_mark:
        marks_.push_back(stack_.size());
        return true;
      case op_tuple:
        return pop_mark(from) && build_tuple(from);
      case op_pop:
        if (stack_.size() <= fence()) return false;
        drop_from(stack_.size() - 1);
        return true;
      case op_pop_mark:
        if (!pop_mark(from)) return false;
        drop_from(from);
        return true;
      case op_empty_list: return push(PyList_New(0));
      case op_empty_dict: return push(PyDict_New());
      case op_append:
        if (stack_.size() < 2 + fence()) return false;
        if (!PyList_CheckExact(stack_[stack_.size() - 2])) return false;
        if (PyList_Append(stack_[stack_.size() - 2], stack_.back()) != 0) return false;
        drop_from(stack_.size() - 1);
        return true;
      case op_appends: {
        if (!pop_mark(from) || from <= fence() || !PyList_CheckExact(stack_[from - 1])) return false;
        PyObject* list = stack_[from - 1];
        for (std::size_t i = from; i < stack_.size(); ++i) {
          if (PyList_Append(list, stack_[i]) != 0) return false;
        }
        drop_from(from);
        return true;
      }
      case op_setitem:
      case op_setitems: {
        if (c == op_setitem) {
          from = stack_.size() - 2;
          if (stack_.size() < 3 || from <= fence()) return false;
        } else if (!pop_mark(from) || from <= fence()) {
          return false;
        }
        PyObject* dict = stack_[from - 1];
        if (!PyDict_CheckExact(dict) || (stack_.size() - from) % 2 != 0) return false;
        for (std::size_t i = from; i < stack_.size(); i += 2) {
          if (PyDict_SetItem(dict, stack_[i], stack_[i + 1]) != 0) return false;
        }
        drop_from(from);
        return true;
      }
      case op_memoize:
        if (stack_.empty()) return false;
        memo_.push_back(Py_NewRef(stack_.back()));
        return true;
      case op_binget:
      case op_long_binget: {
        const int width = c == op_binget ? 1 : 4;
        if (!take(static_cast<std::size_t>(width))) return false;
        const std::uint64_t index = le(p_ - width, width);
        if (index >= memo_.size()) return false;
        return push(Py_NewRef(memo_[index]));
      }
      default: return false;
    }
  }

  const unsigned char* p_;
  const unsigned char* end_;
  scratch& room_;
  std::vector<PyObject*>& stack_;
  std::vector<std::size_t>& marks_;
  std::vector<PyObject*>& memo_;
};

}  // namespace

bool encode(PyObject* obj, std::string& out) {
  thread_local memo_table memo;
  return encoder(out, memo).run(obj);
}

PyObject* decode(std::span<const std::byte> data) {
  thread_local scratch shared;
  PyObject* result;
  if (!shared.busy) {
    result = decoder(data, shared).run();
  } else {
    scratch own;
    result = decoder(data, own).run();
  }
  if (result == nullptr) PyErr_Clear();
  return result;
}

}  // namespace mphost::embed::builtin_pickle
