// The blocking-call helper (blocking_call.hpp): timeouts read as the stdlib
// reads them, the GIL held for the first attempt and released for the wait,
// EINTR running the Python signal handlers (raising, or resuming with the
// time left), core errors mapped by errors.cpp.
#include "mphost/embed/blocking_call.hpp"

#include <gtest/gtest.h>

#include <poll.h>
#include <signal.h>

#include <cerrno>
#include <chrono>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

#include "mphost/ipc/error.hpp"
#include "python_test_support.hpp"

namespace mphost::embed {
namespace {

using namespace std::chrono_literals;
using testing::ref;
using testing::scope;
using testing::seconds_since;
using testing::take_error;
using ipc::deadline;
using ipc::wait_result;

// What one attempt saw.
struct seen {
  bool gil;
  deadline until;
};

class BlockingCallTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(py.exec("import signal\n"
                        "hits = []\n"
                        "def note(signo, frame): hits.append(signo)\n"
                        "def interrupt(signo, frame): raise KeyboardInterrupt('from the handler')\n"))
        << take_error();
  }
  void TearDown() override {
    // A stray late signal must not end the test program.
    EXPECT_TRUE(py.exec("signal.signal(signal.SIGUSR1, signal.SIG_IGN)")) << take_error();
  }
  void handle_sigusr1_with(const char* handler) {
    ASSERT_TRUE(py.exec(std::string("signal.signal(signal.SIGUSR1, ") + handler + ")")) << take_error();
  }
  deadline from(PyObject* timeout) {
    deadline until = deadline::immediate();
    EXPECT_TRUE(timeout_deadline(timeout, until)) << take_error();
    return until;
  }
  deadline from(const char* expr) {
    ref value = py.eval(expr);
    EXPECT_TRUE(value) << take_error();
    return from(value.get());
  }
  std::string refused(const char* expr, const char* nan_message = default_nan_message) {
    ref value = py.eval(expr);
    deadline until = deadline::infinite();
    EXPECT_FALSE(timeout_deadline(value.get(), until, nan_message));
    return take_error();
  }

  scope py;
  std::vector<seen> attempts;
};

// ---- timeout_deadline ----

TEST_F(BlockingCallTest, NoTimeoutOrNoneWaitsForever) {
  EXPECT_TRUE(from(static_cast<PyObject*>(nullptr)).is_infinite());
  EXPECT_TRUE(from(Py_None).is_infinite());
  EXPECT_TRUE(from("float('inf')").is_infinite());
  EXPECT_TRUE(from("1e300").is_infinite());
}

TEST_F(BlockingCallTest, ZeroOrNegativeTimeoutIsOneAttemptWithoutWaiting) {
  for (const char* expr : {"0", "0.0", "-1", "-0.5", "float('-inf')"}) {
    const deadline until = from(expr);
    EXPECT_FALSE(until.is_infinite()) << expr;
    EXPECT_TRUE(until.expired()) << expr;
  }
}

TEST_F(BlockingCallTest, SecondsAreCountedFromNow) {
  const deadline floating = from("2.5");
  EXPECT_FALSE(floating.expired());
  EXPECT_LE(floating.remaining(), 2500ms);
  EXPECT_GT(floating.remaining(), 2000ms);
  const deadline integral = from("3");
  EXPECT_LE(integral.remaining(), 3000ms);
  EXPECT_GT(integral.remaining(), 2500ms);
  // Anything float() takes, as the stdlib's `time.monotonic() + timeout`.
  const deadline decimal = from("__import__('fractions').Fraction(1, 2)");
  EXPECT_LE(decimal.remaining(), 500ms);
  EXPECT_GT(decimal.remaining(), 0ms);
}

TEST_F(BlockingCallTest, NanIsRefusedWithTheCallersMessage) {
  EXPECT_EQ(refused("float('nan')"), "builtins.ValueError: timeout must not be NaN");
  EXPECT_EQ(refused("float('nan')", "Invalid value NaN (not a number)"),
            "builtins.ValueError: Invalid value NaN (not a number)");
}

TEST_F(BlockingCallTest, ANonNumberIsRefusedAsFloatRefusesIt) {
  EXPECT_EQ(refused("'1.0'"), "builtins.TypeError: must be real number, not str");
  EXPECT_EQ(refused("[]"), "builtins.TypeError: must be real number, not list");
}

// ---- blocking_call ----

// An attempt that records what it saw and returns the next scripted outcome.
auto scripted(std::vector<seen>& attempts, std::vector<wait_result> outcomes) {
  return [&attempts, outcomes](const deadline& d) {
    attempts.push_back({PyGILState_Check() != 0, d});
    return outcomes.at(attempts.size() - 1);
  };
}

TEST_F(BlockingCallTest, TheFirstAttemptHoldsTheGilAndDoesNotWait) {
  const auto result = blocking_call(deadline::infinite(), scripted(attempts, {wait_result::ok}));
  ASSERT_EQ(result, wait_result::ok);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_TRUE(attempts[0].gil);
  EXPECT_TRUE(attempts[0].until.expired());
  EXPECT_EQ(attempts[0].until.when(), deadline::immediate().when());
}

TEST_F(BlockingCallTest, TheWaitReleasesTheGilAgainstTheCallersDeadline) {
  const deadline until = deadline::after(10s);
  const auto result = blocking_call(until, scripted(attempts, {wait_result::timed_out, wait_result::ok}));
  ASSERT_EQ(result, wait_result::ok);
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_FALSE(attempts[1].gil);
  EXPECT_EQ(attempts[1].until.when(), until.when());
  EXPECT_TRUE(PyGILState_Check());
}

TEST_F(BlockingCallTest, AnExpiredDeadlineMeansOneAttemptWithTheGil) {
  const auto result = blocking_call(deadline::immediate(), scripted(attempts, {wait_result::timed_out}));
  EXPECT_EQ(result, wait_result::timed_out);
  EXPECT_EQ(attempts.size(), 1u);
}

TEST_F(BlockingCallTest, OutcomesOtherThanWaitingAreReturnedAsTheyCome) {
  for (wait_result outcome : {wait_result::closed, wait_result::owner_died}) {
    attempts.clear();
    EXPECT_EQ(blocking_call(deadline::infinite(), scripted(attempts, {wait_result::timed_out, outcome})), outcome);
    EXPECT_EQ(attempts.size(), 2u);
  }
}

TEST_F(BlockingCallTest, ItTimesOutWhenTheDeadlinePasses) {
  const auto start = std::chrono::steady_clock::now();
  const deadline until = deadline::after(80ms);
  int calls = 0;
  const auto result = blocking_call(until, [&](const deadline& d) {
    ++calls;
    if (!d.expired()) std::this_thread::sleep_until(d.when());
    return wait_result::timed_out;
  });
  EXPECT_EQ(result, wait_result::timed_out);
  EXPECT_EQ(calls, 2);
  EXPECT_GE(seconds_since(start), 0.08);
  EXPECT_LT(seconds_since(start), 2.0);
}

TEST_F(BlockingCallTest, AnEarlyTimedOutWaitsAgainUntilTheDeadline) {
  // A wait that came back before its deadline (a spurious wake-up) is
  // not a timeout.
  const deadline until = deadline::after(60ms);
  int calls = 0;
  const auto result = blocking_call(until, [&](const deadline&) {
    ++calls;
    std::this_thread::sleep_for(5ms);
    return wait_result::timed_out;
  });
  EXPECT_EQ(result, wait_result::timed_out);
  EXPECT_GT(calls, 3);
  EXPECT_TRUE(until.expired());
}

TEST_F(BlockingCallTest, ASignalWhoseHandlerRaisesEndsTheWaitWithThatError) {
  handle_sigusr1_with("interrupt");
  const auto result = blocking_call(deadline::infinite(), [&](const deadline&) {
    attempts.push_back({PyGILState_Check() != 0, deadline::infinite()});
    if (attempts.size() == 1) return wait_result::timed_out;
    ::raise(SIGUSR1);  // trips the Python handler, as a signal during the wait does
    return wait_result::interrupted;
  });
  EXPECT_FALSE(result.has_value());
  EXPECT_EQ(take_error(), "builtins.KeyboardInterrupt: from the handler");
  EXPECT_EQ(attempts.size(), 2u);
}

TEST_F(BlockingCallTest, ASignalWhoseHandlerReturnsResumesWithTheTimeLeft) {
  handle_sigusr1_with("note");
  const auto start = std::chrono::steady_clock::now();
  const deadline until = deadline::after(200ms);
  const auto result = blocking_call(until, [&](const deadline& d) {
    attempts.push_back({PyGILState_Check() != 0, d});
    if (attempts.size() == 1) return wait_result::timed_out;
    if (attempts.size() == 2) {
      std::this_thread::sleep_for(50ms);
      ::raise(SIGUSR1);
      return wait_result::interrupted;
    }
    std::this_thread::sleep_until(d.when());
    return wait_result::timed_out;
  });
  EXPECT_EQ(result, wait_result::timed_out);
  EXPECT_EQ(py.show("hits"), testing::list_repr(SIGUSR1));
  ASSERT_EQ(attempts.size(), 3u);
  EXPECT_FALSE(attempts[2].gil);
  EXPECT_EQ(attempts[2].until.when(), until.when());  // not restarted: the time left
  EXPECT_GE(seconds_since(start), 0.2);
  EXPECT_LT(seconds_since(start), 0.2 + 1.0);
}

TEST_F(BlockingCallTest, AnInterruptionAfterTheDeadlineStillGetsOneAttempt) {
  handle_sigusr1_with("note");
  const deadline until = deadline::after(20ms);
  const auto result = blocking_call(until, [&](const deadline& d) {
    attempts.push_back({PyGILState_Check() != 0, d});
    if (attempts.size() == 1) return wait_result::timed_out;
    if (attempts.size() == 2) {
      std::this_thread::sleep_for(40ms);
      return wait_result::interrupted;
    }
    return d.expired() ? wait_result::ok : wait_result::closed;
  });
  EXPECT_EQ(result, wait_result::ok);
  EXPECT_EQ(attempts.size(), 3u);
}

// A real blocking system call interrupted by a signal from another thread.
wait_result sleep_in_poll(const deadline& d) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(d.remaining());
  const int rc = ::poll(nullptr, 0, d.is_infinite() ? -1 : static_cast<int>(left.count()));
  if (rc < 0 && errno == EINTR) return wait_result::interrupted;
  return wait_result::timed_out;
}

TEST_F(BlockingCallTest, ARealSignalDuringTheWaitRaisesFromItsHandler) {
  handle_sigusr1_with("interrupt");
  const auto start = std::chrono::steady_clock::now();
  std::optional<wait_result> result;
  {
    const testing::signal_later sender(SIGUSR1, 130ms);
    result = blocking_call(deadline::after(20s), sleep_in_poll);
  }
  EXPECT_FALSE(result.has_value());
  EXPECT_EQ(take_error(), "builtins.KeyboardInterrupt: from the handler");
  EXPECT_LT(seconds_since(start), 10.0);
}

TEST_F(BlockingCallTest, ARealSignalWithAQuietHandlerDoesNotCutTheTimeoutShort) {
  handle_sigusr1_with("note");
  const auto start = std::chrono::steady_clock::now();
  std::optional<wait_result> result;
  {
    const testing::signal_later sender(SIGUSR1, 50ms);
    result = blocking_call(deadline::after(300ms), sleep_in_poll);
  }
  EXPECT_EQ(result, wait_result::timed_out);
  EXPECT_EQ(py.show("hits"), testing::list_repr(SIGUSR1));
  EXPECT_GE(seconds_since(start), 0.3);
  EXPECT_LT(seconds_since(start), 0.3 + 5.0);
}

TEST_F(BlockingCallTest, CoreErrorsBecomeThePythonErrorsErrorsCppChooses) {
  auto closed = blocking_call(deadline::infinite(), [](const deadline&) -> wait_result {
    throw std::system_error(make_error_code(errc::handle_closed));
  });
  EXPECT_FALSE(closed.has_value());
  EXPECT_EQ(take_error(), "builtins.OSError: handle is closed");

  // Thrown while the GIL is released: the error is set once it is back.
  int calls = 0;
  auto failed = blocking_call(deadline::infinite(), [&](const deadline&) -> wait_result {
    if (++calls == 1) return wait_result::timed_out;
    throw std::runtime_error("boom");
  });
  EXPECT_FALSE(failed.has_value());
  EXPECT_TRUE(PyGILState_Check());
  EXPECT_EQ(take_error(), "builtins.RuntimeError: boom");

  auto gone = blocking_call(deadline::infinite(), [](const deadline&) -> wait_result {
    throw std::system_error(EPIPE, std::system_category(), "write");
  });
  EXPECT_FALSE(gone.has_value());
  EXPECT_EQ(take_error().rfind("builtins.BrokenPipeError: ", 0), 0u);
}

TEST_F(BlockingCallTest, AReleasedFirstAttemptRunsWithoutTheGilAgainstTheDeadline) {
  const deadline until = deadline::after(10s);
  const auto result =
      blocking_call(until, scripted(attempts, {wait_result::ok}), first_attempt::released);
  ASSERT_EQ(result, wait_result::ok);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_FALSE(attempts[0].gil);
  EXPECT_EQ(attempts[0].until.when(), until.when());
}

TEST_F(BlockingCallTest, APythonTimeoutIsReadOnlyWhenTheCallMustWait) {
  ref bad = py.eval("'not a number'");
  ASSERT_TRUE(bad);
  EXPECT_EQ(blocking_call(python_timeout{bad.get()}, scripted(attempts, {wait_result::ok})), wait_result::ok);
  attempts.clear();
  EXPECT_FALSE(blocking_call(python_timeout{bad.get()}, scripted(attempts, {wait_result::timed_out})).has_value());
  EXPECT_EQ(take_error(), "builtins.TypeError: must be real number, not str");
  EXPECT_EQ(attempts.size(), 1u);

  ref nan = py.eval("float('nan')");
  attempts.clear();
  EXPECT_FALSE(blocking_call(python_timeout{nan.get(), "Invalid value NaN (not a number)"},
                             scripted(attempts, {wait_result::timed_out}))
                   .has_value());
  EXPECT_EQ(take_error(), "builtins.ValueError: Invalid value NaN (not a number)");

  // Read, it is the deadline of the wait that follows.
  ref seconds = py.eval("10");
  attempts.clear();
  const auto before = std::chrono::steady_clock::now();
  EXPECT_EQ(blocking_call(python_timeout{seconds.get()}, scripted(attempts, {wait_result::timed_out, wait_result::ok})),
            wait_result::ok);
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_TRUE(attempts[0].gil);
  EXPECT_FALSE(attempts[1].gil);
  EXPECT_GE(attempts[1].until.when(), before + 10s);
  EXPECT_LE(attempts[1].until.when(), std::chrono::steady_clock::now() + 10s);

  attempts.clear();
  EXPECT_EQ(blocking_call(python_timeout{Py_None}, scripted(attempts, {wait_result::timed_out, wait_result::ok})),
            wait_result::ok);
  EXPECT_TRUE(attempts.at(1).until.is_infinite());
  attempts.clear();
  EXPECT_EQ(blocking_call(python_timeout{nullptr}, scripted(attempts, {wait_result::timed_out, wait_result::ok})),
            wait_result::ok);
  EXPECT_TRUE(attempts.at(1).until.is_infinite());
}

// ---- gil.hpp ----

TEST_F(BlockingCallTest, WithoutGilReturnsTheResultAndPassesExceptionsWithTheGilBack) {
  EXPECT_EQ(without_gil([] { return PyGILState_Check(); }), 0);
  EXPECT_THROW(without_gil([]() -> int { throw std::system_error(make_error_code(errc::peer_closed)); }),
               std::system_error);
  EXPECT_TRUE(PyGILState_Check());
}

TEST_F(BlockingCallTest, TheSignalHookRunsHandlersAndSaysWhetherToGoOn) {
  handle_sigusr1_with("note");
  EXPECT_TRUE(without_gil([] {
    ::raise(SIGUSR1);
    return check_signals_without_gil();
  }));
  EXPECT_EQ(py.show("hits"), testing::list_repr(SIGUSR1));
  handle_sigusr1_with("interrupt");
  EXPECT_FALSE(without_gil([] {
    ::raise(SIGUSR1);
    return check_signals_without_gil();
  }));
  EXPECT_EQ(take_error(), "builtins.KeyboardInterrupt: from the handler");
}

}  // namespace
}  // namespace mphost::embed
