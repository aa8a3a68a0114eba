// `_multiprocessing.SemLock` and its companions (semlock.hpp) through the
// Python C API: acquire and release, timeouts, the value, the recursive
// kind's ownership, a signal during a blocked acquire, `with` through
// _SemLockFront and the _locked_property accessor.
#include "mphost/embed/semlock.hpp"

#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "python_test_support.hpp"

namespace mphost::embed {
namespace {

using namespace std::chrono_literals;
using testing::scope;
using testing::seconds_since;
using testing::take_error;

class SemLockBindingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int serial = 0;
    name = "/mphost-embed-test-";
    name += std::to_string(::getpid());
    name += '-';
    name += std::to_string(++serial);
    std::string setup = "import signal, threading, time\n"
                        "from _multiprocessing import SemLock, _SemLockFront, _locked_property, sem_unlink\n"
                        "NAME = '";
    setup += name;
    setup += "'\n";
    ASSERT_TRUE(py.exec(setup)) << take_error();
    ASSERT_TRUE(py.exec(
                        "hits = []\n"
                        "def note(signo, frame): hits.append(signo)\n"
                        "def interrupt(signo, frame): raise KeyboardInterrupt('from the handler')\n"
                        "def lock(kind=1, value=1, maxvalue=1):\n"
                        "    return SemLock(kind, value, maxvalue, NAME, True)\n"
                        "def timed(fn, *args):\n"
                        "    start = time.monotonic()\n"
                        "    try:\n"
                        "        return fn(*args), time.monotonic() - start\n"
                        "    except BaseException as e:\n"
                        "        return type(e).__name__, time.monotonic() - start\n"))
        << take_error();
  }
  void TearDown() override {
    EXPECT_TRUE(py.exec("signal.signal(signal.SIGUSR1, signal.SIG_IGN)")) << take_error();
  }
  // Runs `code`, then shows `expr`.
  std::string after(const std::string& code, const std::string& expr) {
    if (!py.exec(code)) return "raised " + take_error();
    return py.show(expr);
  }

  scope py;
  std::string name;
};

TEST_F(SemLockBindingTest, AcquireAndReleaseMoveTheValue) {
  EXPECT_EQ(after("s = lock(1, 2, 2)", "(s.kind, s.maxvalue, s.name, s._get_value())"), "(1, 2, None, 2)");
  EXPECT_EQ(py.show("(s.acquire(), s._get_value(), s.acquire(), s._is_zero())"), "(True, 1, True, True)");
  EXPECT_EQ(py.show("(s.acquire(False), s.acquire(block=False), s._get_value())"), "(False, False, 0)");
  EXPECT_EQ(py.show("(s.release(), s._get_value(), s.release(), s._get_value())"), "(None, 1, None, 2)");
  EXPECT_EQ(py.show("s.release()"), "raised builtins.ValueError: semaphore or lock released too many times");
  EXPECT_EQ(py.show("s._get_value()"), "2");
}

TEST_F(SemLockBindingTest, ATimeoutIsHonouredAndANegativeOneIsZero) {
  ASSERT_TRUE(py.exec("s = lock()\nassert s.acquire()")) << take_error();
  EXPECT_EQ(py.show("(lambda r: (r[0], 0.1 <= r[1] < 3))(timed(s.acquire, True, 0.1))"), "(False, True)");
  EXPECT_EQ(py.show("(lambda r: (r[0], r[1] < 0.5))(timed(s.acquire, True, -1))"), "(False, True)");
  EXPECT_EQ(py.show("(lambda r: (r[0], r[1] < 0.5))(timed(s.acquire, True, 0))"), "(False, True)");
  EXPECT_EQ(py.show("s.acquire(timeout=0.01)"), "False");
  // Without blocking the timeout is not looked at.
  EXPECT_EQ(py.show("s.acquire(False, 'not a number')"), "False");
}

TEST_F(SemLockBindingTest, BadArgumentsAreRefusedAsTheStdlibRefusesThem) {
  // The timeout is read when the call has to wait for it.
  ASSERT_TRUE(py.exec("s = lock()")) << take_error();
  EXPECT_EQ(py.show("(s.acquire(True, 'x'), s.release())"), "(True, None)");
  ASSERT_TRUE(py.exec("assert s.acquire()")) << take_error();
  EXPECT_EQ(py.show("s.acquire(True, float('nan'))"), "raised builtins.ValueError: Invalid value NaN (not a number)");
  EXPECT_EQ(py.show("s.acquire(True, 'x')"), "raised builtins.TypeError: must be real number, not str");
  EXPECT_EQ(py.show("s.acquire(True, 1, 2)"), "raised builtins.TypeError: acquire() takes at most 2 arguments");
  EXPECT_EQ(py.show("s.acquire(wait=1)"),
            "raised builtins.TypeError: acquire() got an unexpected keyword argument 'wait'");
  EXPECT_EQ(py.show("s.release(1)"), "raised builtins.TypeError: SemLock.release() takes no arguments (1 given)");
  EXPECT_EQ(py.show("SemLock(2, 1, 1, NAME, True)"), "raised builtins.ValueError: unrecognized kind");
  EXPECT_EQ(py.show("SemLock(1, 2, 1, NAME, True)"), "raised builtins.ValueError: invalid value or maxvalue");
}

TEST_F(SemLockBindingTest, ARecursiveMutexCountsItsOwnersAcquisitions) {
  ASSERT_TRUE(py.exec("r = lock(kind=0)")) << take_error();
  EXPECT_EQ(py.show("(r.acquire(), r.acquire(), r._count(), r._is_mine())"), "(True, True, 2, True)");
  EXPECT_EQ(py.show("(r.release(), r._count(), r.release(), r._is_mine())"), "(None, 1, None, False)");
  EXPECT_EQ(py.show("r.release()"),
            "raised builtins.AssertionError: attempt to release recursive lock not owned by thread");
  // Another thread holds it: this one waits, then times out.
  ASSERT_TRUE(py.exec("t = threading.Thread(target=r.acquire)\nt.start()\nt.join(10)")) << take_error();
  EXPECT_EQ(py.show("(r._is_mine(), r.acquire(True, 0.05))"), "(False, False)");
}

TEST_F(SemLockBindingTest, AWaiterWakesWhenAnotherThreadReleases) {
  ASSERT_TRUE(py.exec("s = lock()\nassert s.acquire()\nthreading.Timer(0.1, s.release).start()")) << take_error();
  EXPECT_EQ(py.show("(lambda r: (r[0], r[1] < 5))(timed(s.acquire, True, 10))"), "(True, True)");
}

TEST_F(SemLockBindingTest, ASignalWhoseHandlerRaisesInterruptsABlockedAcquire) {
  ASSERT_TRUE(py.exec("signal.signal(signal.SIGUSR1, interrupt)\ns = lock()\nassert s.acquire()")) << take_error();
  const auto start = std::chrono::steady_clock::now();
  {
    // Not a multiple of 100 ms: the core waits in slices of that length
    // (to check the peer is alive), and a signal that lands between two
    // slices is only seen when the wait ends.
    const testing::signal_later sender(SIGUSR1, 130ms);
    EXPECT_EQ(py.show("s.acquire(True, 20)"), "raised builtins.KeyboardInterrupt: from the handler");
  }
  EXPECT_LT(seconds_since(start), 10.0);
  EXPECT_EQ(py.show("s._get_value()"), "0");  // nothing was taken
}

TEST_F(SemLockBindingTest, ASignalWhoseHandlerReturnsLeavesTheTimeoutWhole) {
  ASSERT_TRUE(py.exec("signal.signal(signal.SIGUSR1, note)\ns = lock()\nassert s.acquire()")) << take_error();
  const auto start = std::chrono::steady_clock::now();
  {
    const testing::signal_later sender(SIGUSR1, 50ms);
    EXPECT_EQ(py.show("s.acquire(True, 0.3)"), "False");
  }
  EXPECT_GE(seconds_since(start), 0.3);
  EXPECT_EQ(py.show("hits"), testing::list_repr(SIGUSR1));
}

TEST_F(SemLockBindingTest, WithThroughTheFrontTakesAndGivesBackTheLock) {
  ASSERT_TRUE(py.exec("class Lock(_SemLockFront): pass\n"
                      "l = Lock()\n"
                      "l._semlock = lock()\n"
                      "with l:\n"
                      "    inside = l._semlock._get_value()\n"))
      << take_error();
  EXPECT_EQ(py.show("(inside, l._semlock._get_value())"), "(0, 1)");
  EXPECT_EQ(py.show("Lock().__enter__()"), "raised builtins.AttributeError: 'Lock' object has no attribute '_semlock'");
}

TEST_F(SemLockBindingTest, ALockedPropertyReadsAndWritesUnderTheLock) {
  ASSERT_TRUE(py.exec("class Box: pass\n"
                      "class Synchronized:\n"
                      "    value = _locked_property('value')\n"
                      "    def __init__(self, lock):\n"
                      "        self._obj = Box(); self._obj.value = 1; self._lock = lock\n"
                      "        self.acquire = lock.acquire; self.release = lock.release\n"
                      "v = Synchronized(lock())\n"
                      "v.value += 41\n"))
      << take_error();
  EXPECT_EQ(py.show("(v.value, v._obj.value, v._lock._get_value())"), "(42, 42, 1)");
  EXPECT_EQ(py.show("repr(Synchronized.value)"), "\"<locked property 'value'>\"");
  // An error inside is kept, and the lock still goes back.
  ASSERT_TRUE(py.exec("w = Synchronized(lock())\ndel w._obj.value")) << take_error();
  EXPECT_EQ(py.show("w.value"), "raised builtins.AttributeError: 'Box' object has no attribute 'value'");
  EXPECT_EQ(py.show("w._lock._get_value()"), "1");
}

TEST_F(SemLockBindingTest, ANamedSemLockIsReopenedByNameAndUnlinked) {
  ASSERT_TRUE(py.exec("n = SemLock(1, 3, 5, NAME, False)\n"
                      "m = SemLock._rebuild(None, 1, 5, NAME)\n"
                      "assert m.acquire()\n"))
      << take_error();
  EXPECT_EQ(py.show("(n._get_value(), m.name == NAME)"), "(2, True)");
  EXPECT_EQ(py.show("SemLock._rebuild(None, 0, 5, NAME)"),
            "raised builtins.ValueError: SemLock " + name + " does not match the pickled kind or maxvalue");
  EXPECT_EQ(after("sem_unlink(NAME)", "SemLock._rebuild(None, 1, 5, NAME)").rfind("raised builtins.FileNotFoundError", 0),
            0u);
}

}  // namespace
}  // namespace mphost::embed
