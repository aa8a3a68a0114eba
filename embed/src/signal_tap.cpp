#include "mphost/embed/signal_tap.hpp"

#include <signal.h>

#include <atomic>
#include <cerrno>
#include <string>

#include "mphost/embed/python.hpp"
#include "mphost/ipc/interrupt.hpp"

namespace mphost::embed {
namespace {

using plain_handler = void (*)(int);
using info_handler = void (*)(int, siginfo_t*, void*);

// The action each tapped signal had before: CPython's handler, in one of
// the two forms. Read by the tap, in any thread.
struct replaced_action {
  std::atomic<plain_handler> plain{nullptr};
  std::atomic<info_handler> with_info{nullptr};
};
replaced_action replaced[NSIG];

extern "C" void python_signal_tap(int sig, siginfo_t* info, void* context) {
  if (sig > 0 && sig < NSIG) {
    if (const info_handler h = replaced[sig].with_info.load(std::memory_order_acquire)) {
      h(sig, info, context);
    } else if (const plain_handler h = replaced[sig].plain.load(std::memory_order_acquire)) {
      const int saved = errno;
      h(sig);
      errno = saved;
    }
  }
  ipc::note_signal();
}

bool is_tap(const struct sigaction& action) noexcept {
  return (action.sa_flags & SA_SIGINFO) != 0 && action.sa_sigaction == &python_signal_tap;
}

// Puts the tap in front of the current action of `sig` if that is a
// handler (it is CPython's when the signal has a Python handler).
void tap(int sig) noexcept {
  struct sigaction now{};
  if (sig <= 0 || sig >= NSIG || ::sigaction(sig, nullptr, &now) != 0 || is_tap(now)) return;
  if ((now.sa_flags & SA_SIGINFO) != 0) {
    replaced[sig].plain.store(nullptr, std::memory_order_relaxed);
    replaced[sig].with_info.store(now.sa_sigaction, std::memory_order_release);
  } else {
    if (now.sa_handler == SIG_DFL || now.sa_handler == SIG_IGN) return;
    replaced[sig].with_info.store(nullptr, std::memory_order_relaxed);
    replaced[sig].plain.store(now.sa_handler, std::memory_order_release);
  }
  struct sigaction tapped = now;
  tapped.sa_flags |= SA_SIGINFO;
  tapped.sa_sigaction = &python_signal_tap;
  (void)::sigaction(sig, &tapped, nullptr);
}

// _signal.signal as CPython made it; the wrapper calls it.
PyObject* original_signal = nullptr;
std::string wrapper_doc;

PyObject* signal_then_tap(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* previous = PyObject_Vectorcall(original_signal, args, static_cast<std::size_t>(nargs), kwnames);
  if (previous != nullptr && nargs >= 1) {
    const long sig = PyLong_AsLong(args[0]);
    if (sig == -1 && PyErr_Occurred() != nullptr) {
      PyErr_Clear();
    } else {
      tap(static_cast<int>(sig));
    }
  }
  return previous;
}

PyMethodDef wrapper_def = {"signal", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&signal_then_tap)),
                           METH_FASTCALL | METH_KEYWORDS, nullptr};

// The wrapper's docstring: the original's text signature and text, so
// that help() and inspect.signature() read as before.
void copy_doc(PyObject* original) {
  PyObject* signature = PyObject_GetAttrString(original, "__text_signature__");
  PyObject* doc = PyObject_GetAttrString(original, "__doc__");
  if (signature != nullptr && PyUnicode_Check(signature)) {
    wrapper_doc = std::string("signal") + PyUnicode_AsUTF8(signature) + "\n--\n\n";
  }
  if (doc != nullptr && PyUnicode_Check(doc)) wrapper_doc += PyUnicode_AsUTF8(doc);
  Py_XDECREF(signature);
  Py_XDECREF(doc);
  PyErr_Clear();
  wrapper_doc.shrink_to_fit();
  wrapper_def.ml_doc = wrapper_doc.c_str();
}

bool wrap_signal_function(PyObject* module) {
  PyObject* current = PyObject_GetAttrString(module, "signal");
  if (current == nullptr) return false;
  if (PyCFunction_Check(current) && PyCFunction_GET_FUNCTION(current) == wrapper_def.ml_meth) {
    Py_DECREF(current);
    return true;  // a module state that outlived a re-initialisation
  }
  if (original_signal == nullptr) copy_doc(current);
  Py_XSETREF(original_signal, current);
  PyObject* name = PyUnicode_FromString("_signal");
  // Bound to the module, as the original: inspect drops the `$module`.
  PyObject* wrapper = name != nullptr ? PyCFunction_NewEx(&wrapper_def, module, name) : nullptr;
  Py_XDECREF(name);
  const bool ok = wrapper != nullptr && PyObject_SetAttrString(module, "signal", wrapper) == 0;
  Py_XDECREF(wrapper);
  return ok;
}

// Taps every signal whose Python handler is a callable now.
void tap_current_handlers(PyObject* module) {
  PyObject* getsignal = PyObject_GetAttrString(module, "getsignal");
  if (getsignal == nullptr) return;
  for (int sig = 1; sig < NSIG; ++sig) {
    PyObject* handler = PyObject_CallFunction(getsignal, "i", sig);
    if (handler == nullptr) {
      PyErr_Clear();  // not a signal Python knows
      continue;
    }
    if (PyCallable_Check(handler)) tap(sig);
    Py_DECREF(handler);
  }
  Py_DECREF(getsignal);
}

std::atomic<bool> tapped{false};

// A later interpreter of this process has a _signal module of its own to wrap.
void untap_at_finalize() { tapped.store(false, std::memory_order_release); }

}  // namespace

void tap_python_signals() noexcept {
  if (tapped.load(std::memory_order_acquire)) return;
  PyObject* type;
  PyObject* value;
  PyObject* traceback;
  PyErr_Fetch(&type, &value, &traceback);
  if (PyObject* module = PyImport_ImportModule("_signal")) {
    // Wrapped first, so that a handler set from now on is tapped by the
    // wrapper if the scan does not see it.
    if (wrap_signal_function(module)) {
      tap_current_handlers(module);
      static const bool reset_registered = Py_AtExit(&untap_at_finalize) == 0;
      (void)reset_registered;
      tapped.store(true, std::memory_order_release);
    }
    Py_DECREF(module);
  }
  PyErr_Clear();
  PyErr_Restore(type, value, traceback);
}

bool is_signal_tap(int sig) noexcept {
  struct sigaction now{};
  return sig > 0 && sig < NSIG && ::sigaction(sig, nullptr, &now) == 0 && is_tap(now);
}

}  // namespace mphost::embed
