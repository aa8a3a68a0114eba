#include "mphost/embed/fork_hooks.hpp"

#include <atomic>

namespace mphost::embed {
namespace {
std::atomic<bool> fork_permitted{true};
}  // namespace

void set_fork_allowed(bool allowed) noexcept { fork_permitted.store(allowed); }
bool fork_allowed() noexcept { return fork_permitted.load(); }

runtime::fork_hooks interpreter_fork_hooks() {
  return {[] { PyOS_BeforeFork(); }, [] { PyOS_AfterFork_Parent(); }, [] { PyOS_AfterFork_Child(); }};
}

runtime::fork_hooks interpreter_fork_hooks_without_gil(PyThreadState*& released_state) {
  PyThreadState** state = &released_state;
  return {
      [state] {
        PyEval_RestoreThread(*state);
        PyOS_BeforeFork();
      },
      [state] {
        PyOS_AfterFork_Parent();
        *state = PyEval_SaveThread();
      },
      [state] {
        PyOS_AfterFork_Child();
        *state = PyEval_SaveThread();
      },
  };
}

}  // namespace mphost::embed
