#pragma once
// Helpers of the embedding tests: Python code run in a fresh namespace, the
// pending exception read back as "module.Type: message", signals raised in
// the middle of a blocking call.

#include <gtest/gtest.h>

#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <string>
#include <thread>

#include "mphost/embed/python.hpp"

namespace mphost::embed::testing {

// An owned reference.
class ref {
 public:
  ref() = default;
  explicit ref(PyObject* owned) noexcept : p_(owned) {}
  ~ref() { Py_XDECREF(p_); }
  ref(ref&& other) noexcept : p_(other.p_) { other.p_ = nullptr; }
  ref& operator=(ref&& other) noexcept {
    std::swap(p_, other.p_);
    return *this;
  }
  ref(const ref&) = delete;
  ref& operator=(const ref&) = delete;
  PyObject* get() const noexcept { return p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }

 private:
  PyObject* p_ = nullptr;
};

// The pending exception as "module.Type: message" ("" when none); cleared.
inline std::string take_error() {
  if (PyErr_Occurred() == nullptr) return "";
  PyObject *type, *value, *traceback;
  PyErr_Fetch(&type, &value, &traceback);
  PyErr_NormalizeException(&type, &value, &traceback);
  ref module(PyObject_GetAttrString(type, "__module__"));
  ref name(PyObject_GetAttrString(type, "__qualname__"));
  ref text(value != nullptr ? PyObject_Str(value) : PyUnicode_FromString(""));
  std::string result = std::string(PyUnicode_AsUTF8(module.get())) + "." + PyUnicode_AsUTF8(name.get()) + ": " +
                       (text ? PyUnicode_AsUTF8(text.get()) : "?");
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(traceback);
  PyErr_Clear();
  return result;
}

// A namespace to run test code in, with `name = value` helpers.
class scope {
 public:
  scope() : globals_(PyDict_New()) { PyDict_SetItemString(globals_.get(), "__builtins__", PyEval_GetBuiltins()); }

  // Runs statements; false (error kept pending) when they raised.
  bool exec(const std::string& code) {
    ref result(PyRun_String(code.c_str(), Py_file_input, globals_.get(), globals_.get()));
    return static_cast<bool>(result);
  }
  // Evaluates an expression: a new reference, or nullptr with the error pending.
  ref eval(const std::string& expr) {
    return ref(PyRun_String(expr.c_str(), Py_eval_input, globals_.get(), globals_.get()));
  }
  // repr() of an expression's value, or "raised module.Type: message".
  std::string show(const std::string& expr) {
    ref value = eval(expr);
    if (!value) return "raised " + take_error();
    ref text(PyObject_Repr(value.get()));
    return PyUnicode_AsUTF8(text.get());
  }
  PyObject* globals() const noexcept { return globals_.get(); }

 private:
  ref globals_;
};

// Sends `signo` to `thread` after `delay`, from a thread of its own; joined
// by the destructor.
class signal_later {
 public:
  signal_later(int signo, std::chrono::milliseconds delay, pthread_t thread = pthread_self())
      : sender_([=] {
          std::this_thread::sleep_for(delay);
          pthread_kill(thread, signo);
        }) {}
  ~signal_later() { sender_.join(); }
  signal_later(const signal_later&) = delete;
  signal_later& operator=(const signal_later&) = delete;

 private:
  std::thread sender_;
};

// repr() of the list [value] (built by appending: GCC 12 warns wrongly on
// `"[" + std::to_string(value) + "]"`).
inline std::string list_repr(int value) {
  std::string repr = "[";
  repr += std::to_string(value);
  repr += ']';
  return repr;
}

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace mphost::embed::testing
