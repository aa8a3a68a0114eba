// The signal tap (signal_tap.hpp): signals with a Python handler note
// themselves to the core, so that blocking_call ends a wait for a signal
// that never interrupted the waiting thread's system call (it was run by
// another thread, or landed between two sleeps).
#include "mphost/embed/signal_tap.hpp"

#include <gtest/gtest.h>

#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <thread>

#include "mphost/embed/blocking_call.hpp"
#include "mphost/ipc/futex.hpp"
#include "mphost/ipc/interrupt.hpp"
#include "python_test_support.hpp"

namespace mphost::embed {
namespace {

using namespace std::chrono_literals;
using testing::scope;
using testing::seconds_since;
using testing::take_error;
using ipc::deadline;
using ipc::wait_result;

// Runs `signo`'s handler in a thread of its own after `delay`: the kernel's
// choice when the signal is for the process and that thread is the one
// not blocking it. The waiting thread sees no EINTR.
class signal_elsewhere {
 public:
  signal_elsewhere(int signo, std::chrono::milliseconds delay)
      : thread_([=] {
          std::this_thread::sleep_for(delay);
          ::pthread_kill(::pthread_self(), signo);
        }) {}
  ~signal_elsewhere() { thread_.join(); }
  signal_elsewhere(const signal_elsewhere&) = delete;
  signal_elsewhere& operator=(const signal_elsewhere&) = delete;

 private:
  std::thread thread_;
};

class SignalTapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(py.exec("import signal, _signal\n"
                        "hits = []\n"
                        "def note(signo, frame): hits.append(signo)\n"
                        "def interrupt(signo, frame): raise KeyboardInterrupt('from the handler')\n"))
        << take_error();
    tap_python_signals();
  }
  void TearDown() override {
    EXPECT_TRUE(py.exec("signal.signal(signal.SIGUSR1, signal.SIG_IGN)\n"
                        "signal.signal(signal.SIGUSR2, signal.SIG_IGN)"))
        << take_error();
  }
  void handle(const char* signal_name, const char* handler) {
    ASSERT_TRUE(py.exec(std::string("signal.signal(signal.") + signal_name + ", " + handler + ")")) << take_error();
  }
  // A futex wait that nothing wakes, through blocking_call.
  std::optional<wait_result> wait_on_nothing(double seconds) {
    ipc::futex_word word{0};
    return blocking_call(deadline::from_seconds(seconds),
                         [&](const deadline& d) { return ipc::futex_wait(word, 0, d); });
  }

  scope py;
};

TEST_F(SignalTapTest, EverySignalWithAPythonHandlerIsTapped) {
  handle("SIGUSR1", "note");
  EXPECT_TRUE(is_signal_tap(SIGUSR1));
  EXPECT_TRUE(is_signal_tap(SIGINT)) << "default_int_handler is a Python handler";
  handle("SIGUSR2", "signal.SIG_IGN");
  EXPECT_FALSE(is_signal_tap(SIGUSR2));
  handle("SIGUSR2", "note");
  EXPECT_TRUE(is_signal_tap(SIGUSR2)) << "signal.signal taps what it sets";
  handle("SIGUSR2", "signal.SIG_DFL");
  EXPECT_FALSE(is_signal_tap(SIGUSR2));
}

TEST_F(SignalTapTest, SignalSignalKeepsItsFaceAndResult) {
  EXPECT_EQ(py.show("str(__import__('inspect').signature(_signal.signal))"), "'(signalnum, handler, /)'");
  EXPECT_EQ(py.show("_signal.signal.__name__, _signal.signal.__module__"), "('signal', '_signal')");
  handle("SIGUSR1", "note");
  EXPECT_EQ(py.show("signal.signal(signal.SIGUSR1, interrupt) is note"), "True");
  EXPECT_EQ(py.show("signal.getsignal(signal.SIGUSR1) is interrupt"), "True");
  EXPECT_EQ(py.show("signal.signal(signal.SIGUSR1, 'x')"),
            "raised builtins.TypeError: signal handler must be signal.SIG_IGN, signal.SIG_DFL, or a callable object");
}

TEST_F(SignalTapTest, TheTapRunsCPythonsHandlerThenNotes) {
  handle("SIGUSR1", "note");
  const std::uint32_t before = ipc::signal_count();
  ::raise(SIGUSR1);
  EXPECT_EQ(ipc::signal_count(), before + 1);
  ASSERT_EQ(PyErr_CheckSignals(), 0) << take_error();
  EXPECT_EQ(py.show("hits"), testing::list_repr(SIGUSR1));
}

TEST_F(SignalTapTest, ASignalRunByAnotherThreadEndsTheWaitWithTheHandlersError) {
  handle("SIGUSR1", "interrupt");
  const auto start = std::chrono::steady_clock::now();
  std::optional<wait_result> r;
  {
    const signal_elsewhere sender(SIGUSR1, 100ms);
    r = wait_on_nothing(5.0);
  }
  EXPECT_FALSE(r.has_value());
  EXPECT_EQ(take_error(), "builtins.KeyboardInterrupt: from the handler");
  EXPECT_LT(seconds_since(start), 1.5);
}

TEST_F(SignalTapTest, AHandlerThatReturnsLetsTheWaitRunToItsDeadline) {
  handle("SIGUSR1", "note");
  const auto start = std::chrono::steady_clock::now();
  std::optional<wait_result> r;
  {
    const signal_elsewhere sender(SIGUSR1, 50ms);
    r = wait_on_nothing(0.4);
  }
  ASSERT_TRUE(r.has_value()) << take_error();
  EXPECT_EQ(*r, wait_result::timed_out);
  EXPECT_GE(seconds_since(start), 0.39);
  EXPECT_EQ(py.show("hits"), testing::list_repr(SIGUSR1));
}

TEST_F(SignalTapTest, ASignalRecordedBeforeTheWaitIsHandledBeforeItSleeps) {
  handle("SIGUSR1", "interrupt");
  ::raise(SIGUSR1);  // recorded; the interpreter has not looked yet
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(wait_on_nothing(5.0).has_value());
  EXPECT_EQ(take_error(), "builtins.KeyboardInterrupt: from the handler");
  EXPECT_LT(seconds_since(start), 1.0);
}

}  // namespace
}  // namespace mphost::embed
