// The builtin codec's decoder (builtin_pickle.hpp): reads the pickles of
// builtin graphs that the encoder and the C pickler write, and leaves
// anything else to pickle.loads.
#include <cstdint>
#include <cstring>
#include <vector>

#include "mphost/embed/builtin_pickle.hpp"
#include "pickle_opcodes.hpp"

namespace mphost::embed::builtin_pickle {
namespace {

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
