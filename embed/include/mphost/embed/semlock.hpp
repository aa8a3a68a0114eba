#pragma once
// `_multiprocessing`: the stdlib's accelerator module, provided by mphost
// over its robust shared-memory semaphores (ipc::semaphore). Same names and
// signatures as CPython's, so multiprocessing.synchronize and libraries that
// use SemLock directly (loky, joblib) work unchanged.
//
// One file per type, all written against the C API (acquire and release are
// the hottest calls of the package: every Lock, every bounded queue slot, and
// a vectorcall method costs a fraction of a generic binding's dispatch):
//   semlock_binding.cpp        SemLock: acquire, release, the introspection
//                              the stdlib's synchronize uses, _rebuild;
//                              sem_unlink.
//   semlock_front.cpp          _SemLockFront, a base class for
//                              multiprocessing.synchronize.SemLock: holds
//                              `_semlock` in a slot and implements __enter__
//                              and __exit__ natively, so `with lock:` calls
//                              straight into the semaphore.
//   locked_property.cpp        _locked_property, the descriptor behind
//                              sharedctypes' synchronized attributes
//                              (Value.value, ...): `self.acquire()`, the
//                              attribute of `self._obj`, `self.release()`,
//                              without the stdlib accessor's Python frames.
//   multiprocessing_module.cpp the module: the types above, flags, sem_unlink.
//
// This header is what those files share: the SemLock object and the fast
// paths of acquire() and release(), inline so that `with lock:` and a
// Value's accessor reach the semaphore without a call through the type.

#include "mphost/embed/python.hpp"
#include "mphost/ipc/error.hpp"
#include "mphost/ipc/semaphore.hpp"

namespace mphost::embed::semlock {

struct object {
  PyObject_HEAD
  ipc::semaphore* sem;
  PyObject* name;  // str, or None once unlinked
  bool recovered;
};

// _multiprocessing.SemLock, for the fast paths' exact-type tests; set when
// the module is initialized.
extern PyTypeObject* type;

// acquire(block=True, timeout=None) -> bool, everything but the fast path.
PyObject* acquire_slow(object* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames);

// The Python error for a failed release: not_owner -> AssertionError,
// released_too_many_times -> ValueError (errors.cpp). Returns nullptr.
PyObject* raise_release_error(mphost::errc error);

// SemLock.acquire, the vectorcall method. The hot call of the package:
// acquire() with no arguments on a free lock (or a lock this thread holds
// recursively) is one attempt and no parsing.
inline PyObject* acquire(PyObject* op, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  auto* self = reinterpret_cast<object*>(op);
  if (nargs == 0 && kwnames == nullptr && self->sem->try_acquire()) [[likely]] Py_RETURN_TRUE;
  return acquire_slow(self, args, nargs, kwnames);
}

// release() of `op`, a SemLock.
inline PyObject* release_now(PyObject* op) {
  const mphost::errc error = reinterpret_cast<object*>(op)->sem->release_status();
  if (error != mphost::errc{}) [[unlikely]] return raise_release_error(error);
  Py_RETURN_NONE;
}

// SemLock.release, the fast-call method (the interpreter specializes calls
// of fast-call builtins into a direct C call).
PyObject* release(PyObject* op, PyObject* const* args, Py_ssize_t nargs);

// The types, new references (nullptr with the error set).
PyObject* make_semlock_type();
PyObject* make_front_type();
PyObject* make_locked_property_type();

// _multiprocessing.sem_unlink(name).
PyObject* sem_unlink(PyObject* module, PyObject* name);

}  // namespace mphost::embed::semlock
