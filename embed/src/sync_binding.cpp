// `_mphost.SharedEvent`, `SharedCondition` and `SharedBarrier`: the
// shared-memory event, condition and barrier of ipc/ for the shim's
// multiprocessing.synchronize.
//
// Every wait first looks with the GIL held (a set event, a notified waiter
// or a released barrier need no wait), and only then releases it. A signal
// that interrupts a wait runs the Python handlers (gil.hpp); if one raises,
// the wait is given up cleanly (a condition waiter withdraws, passing on a
// notification it got; a barrier party breaks the barrier, since the others
// would otherwise wait for it) and the exception propagates.
//
// Names: each object lives in a segment of its own with an unguessable name;
// `unlink=True` removes the name at once (objects shared by fork only), and
// then `name` is None. `sync_unlink(name)` removes a name later.
#include <pybind11/pybind11.h>

#include <cmath>
#include <optional>
#include <string>

#include "mphost/embed/bindings.hpp"
#include "mphost/embed/gil.hpp"
#include "mphost/ipc/barrier.hpp"
#include "mphost/ipc/condition.hpp"
#include "mphost/ipc/error.hpp"
#include "mphost/ipc/event.hpp"

namespace py = pybind11;

namespace mphost::embed {
namespace {

ipc::deadline deadline_of(const py::object& timeout) {
  if (timeout.is_none()) return ipc::deadline::infinite();
  const double seconds = timeout.cast<double>();
  if (std::isnan(seconds)) throw py::value_error("Invalid value NaN (not a number)");
  return ipc::deadline::from_seconds(seconds);
}

// Runs `step` with the GIL released until it is not interrupted, running
// the signal handlers at each interruption. Returns the last outcome and
// whether a handler raised (the exception is then pending, and `step`'s
// last outcome was `interrupted`).
template <class Result, class Step>
Result without_gil(Step&& step, Result interrupted, bool& raised) {
  raised = false;
  Result r;
  PyThreadState* saved = PyEval_SaveThread();
  for (;;) {
    r = step();
    if (r != interrupted) break;
    if (!check_signals_without_gil()) {
      raised = true;
      break;
    }
  }
  PyEval_RestoreThread(saved);
  return r;
}

[[noreturn]] void raise_broken() { throw std::system_error(make_error_code(errc::broken_barrier)); }

// The name, or None once unlinked.
py::object name_or_none(const std::string& name, bool unlinked) {
  if (unlinked) return py::none();
  return py::str(name);
}

struct event_face {
  ipc::event ev;
  bool unlinked = false;

  bool wait(const py::object& timeout) {
    const std::uint32_t since = ev.since();
    if (ev.wait(since, ipc::deadline::immediate()) == ipc::wait_result::ok) return true;
    const ipc::deadline until = deadline_of(timeout);
    if (until.expired()) return false;
    bool raised;
    const ipc::wait_result r =
        without_gil([&]() noexcept { return ev.wait(since, until); }, ipc::wait_result::interrupted, raised);
    if (raised) throw_if_python_error();
    return r == ipc::wait_result::ok;
  }
};

struct condition_waiter {
  ipc::condition::waiter w;
};

struct condition_face {
  ipc::condition cond;
  bool unlinked = false;

  bool wait(condition_waiter& waiter, const py::object& timeout) {
    ipc::deadline until = ipc::deadline::infinite();
    try {
      until = deadline_of(timeout);
    } catch (...) {
      cond.withdraw(waiter.w);
      throw;
    }
    if (!waiter.w.active) return true;
    bool raised;
    const ipc::wait_result r =
        without_gil([&]() noexcept { return cond.wait(waiter.w, until); }, ipc::wait_result::interrupted, raised);
    if (raised) {
      cond.withdraw(waiter.w);
      throw_if_python_error();
    }
    return r == ipc::wait_result::ok;
  }
};

struct barrier_face {
  ipc::barrier bar;
  bool unlinked = false;

  std::uint32_t wait(const py::object& timeout, const py::object& action) {
    const ipc::deadline until = deadline_of(timeout);
    bool raised;
    ipc::barrier::entry e{};
    (void)without_gil(
        [&]() noexcept {
          e = bar.enter();
          return e.result;
        },
        ipc::barrier_result::interrupted, raised);
    if (raised) throw_if_python_error();
    if (e.result != ipc::barrier_result::passed) raise_broken();
    if (e.index + 1 == bar.parties()) {
      if (!action.is_none()) {
        try {
          action();
        } catch (...) {
          bar.abandon(e.index);
          throw;
        }
      }
      bar.release(e.index);
      return e.index;
    }
    const ipc::barrier_result r = without_gil([&]() noexcept { return bar.await_release(e.index, until); },
                                              ipc::barrier_result::interrupted, raised);
    if (raised) {
      bar.abandon(e.index);
      throw_if_python_error();
    }
    bar.leave(e.index);
    if (r != ipc::barrier_result::passed) raise_broken();
    return e.index;
  }
};

}  // namespace

void bind_sync(py::module_& m) {
  py::class_<event_face>(m, "SharedEvent", "A flag in shared memory (ipc::event).")
      .def(py::init([](bool unlink) {
             event_face face{ipc::event::create()};
             if (unlink) face.unlinked = ipc::event::unlink(face.ev.name());
             return face;
           }),
           py::arg("unlink") = false)
      .def_static("open", [](const std::string& name) { return event_face{ipc::event::open(name)}; })
      .def_property_readonly("name", [](const event_face& f) { return name_or_none(f.ev.name(), f.unlinked); })
      .def("is_set", [](const event_face& f) { return f.ev.is_set(); })
      .def("set", [](event_face& f) { f.ev.set(); })
      .def("clear", [](event_face& f) { f.ev.clear(); })
      .def("wait", &event_face::wait, py::arg("timeout") = py::none(),
           "True once the flag is up or went up during the wait; False on timeout.");

  py::class_<condition_waiter>(m, "ConditionWaiter", "A waiter's place in a SharedCondition.")
      .def_property_readonly("active", [](const condition_waiter& w) { return w.w.active; });

  py::class_<condition_face>(m, "SharedCondition", "A condition variable in shared memory (ipc::condition).")
      .def(py::init([](bool unlink) {
             condition_face face{ipc::condition::create()};
             if (unlink) face.unlinked = ipc::condition::unlink(face.cond.name());
             return face;
           }),
           py::arg("unlink") = false)
      .def_static("open", [](const std::string& name) { return condition_face{ipc::condition::open(name)}; })
      .def_property_readonly("name", [](const condition_face& f) { return name_or_none(f.cond.name(), f.unlinked); })
      .def("enlist", [](condition_face& f) { return condition_waiter{f.cond.enlist()}; },
           "Become a waiter; call with the lock held, before letting it go.")
      .def("wait", &condition_face::wait, py::arg("waiter"), py::arg("timeout") = py::none(),
           "True when notified, False on timeout (the waiter has left either way).")
      .def("withdraw", [](condition_face& f, condition_waiter& w) { f.cond.withdraw(w.w); })
      .def("notify", [](condition_face& f, std::uint32_t n) { return f.cond.notify(n); }, py::arg("n") = 1)
      .def("notify_all", [](condition_face& f) { return f.cond.notify_all(); })
      .def_property_readonly("waiting", [](const condition_face& f) { return f.cond.waiting(); });

  py::class_<barrier_face>(m, "SharedBarrier", "A barrier in shared memory (ipc::barrier).")
      .def(py::init([](std::uint32_t parties, bool unlink) {
             barrier_face face{ipc::barrier::create(parties)};
             if (unlink) face.unlinked = ipc::barrier::unlink(face.bar.name());
             return face;
           }),
           py::arg("parties"), py::arg("unlink") = false)
      .def_static("open", [](const std::string& name) { return barrier_face{ipc::barrier::open(name)}; })
      .def_property_readonly("name", [](const barrier_face& f) { return name_or_none(f.bar.name(), f.unlinked); })
      .def_property_readonly("parties", [](const barrier_face& f) { return f.bar.parties(); })
      .def("wait", &barrier_face::wait, py::arg("timeout") = py::none(), py::arg("action") = py::none(),
           "The arrival index; the last party runs `action` first. Raises threading.BrokenBarrierError.")
      .def("abort", [](barrier_face& f) { f.bar.abort(); })
      .def("reset", [](barrier_face& f) { f.bar.reset(); })
      .def_property_readonly("n_waiting", [](const barrier_face& f) { return f.bar.n_waiting(); })
      .def_property_readonly("broken", [](const barrier_face& f) { return f.bar.is_broken(); })
      .def_property_readonly("state", [](const barrier_face& f) { return static_cast<int>(f.bar.current_state()); })
      .def_property_readonly("count", [](const barrier_face& f) { return f.bar.count(); });

  m.def("sync_unlink", [](const std::string& name) { return ipc::segment::remove(name); },
        "Remove the name of a SharedEvent, SharedCondition or SharedBarrier; False if it was gone.");
}

}  // namespace mphost::embed
