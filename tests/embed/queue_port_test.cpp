// `_mphost.QueuePort` (queue_port.cpp, queue_port_args.cpp) through the
// Python C API, built as queues.py builds it: items put are got equal and in
// order, get's timeout ends in queue.Empty, a bounded port's slots end in
// queue.Full, an item that cannot be pickled is raised to the caller (simple
// mode) or reported to the queue's hook, and nothing is lost either way,
// argument errors, and closed ports and ends.
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

class QueuePortTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int serial = 0;
    std::string setup = "NAME = '/mphost-embed-port-";
    setup += std::to_string(::getpid());
    setup += '-';
    setup += std::to_string(++serial);
    setup += "'\n";
    ASSERT_TRUE(py.exec(setup)) << take_error();
    ASSERT_TRUE(py.exec("import collections, fractions, pickle, queue, signal, threading, time\n"
                        "from _mphost import Channel, QueuePort\n"
                        "from _multiprocessing import SemLock\n"
                        "def interrupt(signo, frame): raise KeyboardInterrupt('from the handler')\n"
                        "def timed(fn, *args, **kwargs):\n"
                        "    start = time.monotonic()\n"
                        "    try:\n"
                        "        return fn(*args, **kwargs), time.monotonic() - start\n"
                        "    except BaseException as e:\n"
                        "        return type(e).__name__ + ': ' + str(e), time.monotonic() - start\n"
                        "class FakeQueue:\n"
                        "    # What the port calls back on a queue.\n"
                        "    def __init__(self): self.errors, self.fed = [], []\n"
                        "    def __repr__(self): return '<FakeQueue>'\n"
                        "    def _on_queue_feeder_error(self, e, obj): self.errors.append((type(e).__name__, obj))\n"
                        "    def _to_feeder(self, obj): self.fed.append(obj)\n"
                        "class Counter:\n"
                        "    def __init__(self): self.n = 0\n"
                        "    def release(self): self.n += 1\n"
                        "class Interrupting:\n"
                        "    def __reduce__(self): raise KeyboardInterrupt('while pickling')\n"
                        "ch = Channel.create()\n"
                        "def port(queue=None, semlock=None, **options):\n"
                        "    return QueuePort(queue, ch, ch, semlock, pickle.dumps, pickle.loads, **options)\n"
                        "def slots(n):\n"
                        "    return SemLock(1, n, n, NAME, True)\n"))
        << take_error();
  }
  void TearDown() override {
    EXPECT_TRUE(py.exec("signal.signal(signal.SIGUSR1, signal.SIG_IGN)\nch.close()")) << take_error();
  }
  std::string after(const std::string& code, const std::string& expr) {
    if (!py.exec(code)) return "raised " + take_error();
    return py.show(expr);
  }

  scope py;
};

TEST_F(QueuePortTest, ItemsPutAreGotEqualAndInOrder) {
  // Items of the builtin codec, items it leaves to pickle, and one large
  // enough to travel as a block.
  ASSERT_TRUE(py.exec("items = [None, 1, -2**70, 2.5, 'text', b'bytes', (1, 'a'), [1, [2]], {'k': {3}},\n"
                      "         fractions.Fraction(1, 3), collections.OrderedDict(a=1), b'x' * (1 << 20), ()]\n"
                      "p = port(simple=True)\n"
                      "for item in items: p.put(item)\n"
                      "got = [p.get() for _ in items]\n"))
      << take_error();
  EXPECT_EQ(py.show("got == items"), "True");
  EXPECT_EQ(py.show("[type(x).__name__ for x in got[9:11]]"), "['Fraction', 'OrderedDict']");
  EXPECT_EQ(py.show("ch.poll()"), "False");
  // dumps() is the pickle put sends: pickle.loads reads it back.
  EXPECT_EQ(py.show("[pickle.loads(p.dumps(x)) == x for x in items[:10]] == [True] * 10"), "True");
}

TEST_F(QueuePortTest, GetWaitsForItsTimeoutThenRaisesEmpty) {
  ASSERT_TRUE(py.exec("p = port()")) << take_error();
  EXPECT_EQ(py.show("(lambda r: (r[0], 0.1 <= r[1] < 3))(timed(p.get, True, 0.1))"), "('Empty: ', True)");
  EXPECT_EQ(py.show("(lambda r: (r[0], 0.05 <= r[1] < 3))(timed(p.get, timeout=0.05))"), "('Empty: ', True)");
  EXPECT_EQ(py.show("(lambda r: (r[0], r[1] < 0.5))(timed(p.get, False))"), "('Empty: ', True)");
  EXPECT_EQ(py.show("(lambda r: (r[0], r[1] < 0.5))(timed(p.get, True, -1))"), "('Empty: ', True)");
  EXPECT_EQ(py.show("p.get(True, 'soon')"), "raised builtins.TypeError: must be real number, not str");
  // An item put by another thread while get waits ends the wait.
  ASSERT_TRUE(py.exec("threading.Timer(0.1, p.put, ('late',)).start()")) << take_error();
  EXPECT_EQ(py.show("(lambda r: (r[0], r[1] < 5))(timed(p.get, True, 10))"), "('late', True)");
}

TEST_F(QueuePortTest, ASignalWhoseHandlerRaisesInterruptsABlockedGet) {
  ASSERT_TRUE(py.exec("p = port()\nsignal.signal(signal.SIGUSR1, interrupt)")) << take_error();
  const auto start = std::chrono::steady_clock::now();
  {
    const testing::signal_later sender(SIGUSR1, 130ms);
    EXPECT_EQ(py.show("p.get(True, 20)"), "raised builtins.KeyboardInterrupt: from the handler");
  }
  EXPECT_LT(seconds_since(start), 10.0);
  EXPECT_EQ(py.show("(p.put('after'), p.get(True, 1))"), "(None, 'after')");
}

TEST_F(QueuePortTest, ABoundedPortRaisesFullWhileNoSlotIsFree) {
  ASSERT_TRUE(py.exec("s = slots(2)\np = port(semlock=s)\np.put('a')\np.put('b', True, 1)")) << take_error();
  EXPECT_EQ(py.show("s._get_value()"), "0");
  EXPECT_EQ(py.show("(lambda r: (r[0], r[1] < 0.5))(timed(p.put, 'c', False))"), "('Full: ', True)");
  EXPECT_EQ(py.show("(lambda r: (r[0], 0.1 <= r[1] < 3))(timed(p.put, 'c', timeout=0.1))"), "('Full: ', True)");
  // A get gives its slot back.
  EXPECT_EQ(py.show("(p.get(), s._get_value(), p.put('c', False), s._get_value())"), "('a', 1, None, 0)");
  EXPECT_EQ(py.show("(p.get(False), p.get(False), s._get_value())"), "('b', 'c', 2)");
  // A put waiting for a slot gets the one a get frees.
  ASSERT_TRUE(py.exec("p.put(1)\np.put(2)\nthreading.Timer(0.1, p.get).start()")) << take_error();
  EXPECT_EQ(py.show("(lambda r: (r[0], r[1] < 5))(timed(p.put, 3, True, 10))"), "(None, True)");
  EXPECT_EQ(py.show("(p.get(False), p.get(False))"), "(2, 3)");
}

TEST_F(QueuePortTest, InSimpleModeAnUnpicklableItemRaisesInTheCallerAndLosesNothing) {
  ASSERT_TRUE(py.exec("p = port(simple=True)\np.put('before')")) << take_error();
  EXPECT_EQ(py.show("p.put(threading.Lock())"), "raised builtins.TypeError: cannot pickle '_thread.lock' object");
  EXPECT_EQ(py.show("p.put(Interrupting())"), "raised builtins.KeyboardInterrupt: while pickling");
  EXPECT_EQ(py.show("(p.put('after'), p.get(), p.get(), ch.poll())"), "(None, 'before', 'after', False)");
}

TEST_F(QueuePortTest, InQueueModeAnUnpicklableItemIsReportedAndItsSlotGivenBack) {
  ASSERT_TRUE(py.exec("q = FakeQueue()\ns = slots(1)\ntasks = Counter()\np = port(q, s, tasks=tasks)")) << take_error();
  EXPECT_EQ(py.show("(p.put(threading.Lock()), q.errors[0][0], s._get_value(), tasks.n, ch.poll())"),
            "(None, 'TypeError', 1, 0, False)");
  // An exception that is not an Exception reaches the caller, and the slot
  // still goes back.
  EXPECT_EQ(py.show("p.put(Interrupting())"), "raised builtins.KeyboardInterrupt: while pickling");
  EXPECT_EQ(py.show("(s._get_value(), tasks.n, len(q.errors))"), "(1, 0, 1)");
  EXPECT_EQ(py.show("(p.put('kept', False), tasks.n, p.get(False), s._get_value())"), "(None, 1, 'kept', 1)");
}

TEST_F(QueuePortTest, AFeedingPortHandsItemsToTheQueueAndCountsThem) {
  ASSERT_TRUE(py.exec("q = FakeQueue()\ns = slots(2)\ntasks = Counter()\np = port(q, s, tasks=tasks, feeder=True)\n"
                      "p.put(threading.Lock())\np.put('x')"))
      << take_error();
  EXPECT_EQ(py.show("([type(x).__name__ for x in q.fed], tasks.n, s._get_value(), ch.poll())"),
            "(['lock', 'str'], 2, 0, False)");
  EXPECT_EQ(py.show("p.put('y', False)"), "raised queue.Full: ");
}

TEST_F(QueuePortTest, BadArgumentsAreTypeErrorsThatSayWhatIsWrong) {
  ASSERT_TRUE(py.exec("p = port()\nsp = port(simple=True)")) << take_error();
  EXPECT_EQ(py.show("p.put()"), "raised builtins.TypeError: put() missing required argument 'obj'");
  EXPECT_EQ(py.show("p.put(1, True, None, 4)"), "raised builtins.TypeError: put() takes at most 3 arguments (4 given)");
  EXPECT_EQ(py.show("p.get(True, None, 3)"), "raised builtins.TypeError: get() takes at most 2 arguments (3 given)");
  EXPECT_EQ(py.show("p.put(1, blok=False)"),
            "raised builtins.TypeError: put() got an unexpected keyword argument 'blok'");
  EXPECT_EQ(py.show("p.put(1, False, block=True)"),
            "raised builtins.TypeError: put() got multiple values for argument 'block'");
  EXPECT_EQ(py.show("sp.put(1, True)"), "raised builtins.TypeError: put() takes exactly one argument (2 given)");
  EXPECT_EQ(py.show("sp.get(True)"), "raised builtins.TypeError: get() takes no arguments (1 given)");
  EXPECT_EQ(py.show("sp.put(1, block=True)"),
            "raised builtins.TypeError: put() got an unexpected keyword argument 'block'");
  EXPECT_EQ(py.show("sp.get(timeout=1)"),
            "raised builtins.TypeError: get() got an unexpected keyword argument 'timeout'");
  EXPECT_EQ(py.show("QueuePort(None, ch, ch, None, 1, pickle.loads)"),
            "raised builtins.TypeError: dumps and loads must be callable");
  EXPECT_EQ(py.show("QueuePort(None, 3, ch, None, pickle.dumps, pickle.loads)"),
            "raised builtins.TypeError: expected an _mphost.Channel, not int");
  EXPECT_EQ(py.show("QueuePort(None, ch, ch)").rfind("raised builtins.TypeError: ", 0), 0u);
  // Nothing was sent by the calls refused.
  EXPECT_EQ(py.show("ch.poll()"), "False");
}

TEST_F(QueuePortTest, AClosedPortRaisesValueErrorNamingItsQueue) {
  ASSERT_TRUE(py.exec("q = FakeQueue()\np = port(q)\np.put(1)\np.close()\nbare = port()\nbare.close()")) << take_error();
  EXPECT_EQ(py.show("p.closed"), "True");
  EXPECT_EQ(py.show("p.put(2)"), "raised builtins.ValueError: Queue <FakeQueue> is closed");
  EXPECT_EQ(py.show("p.get(False)"), "raised builtins.ValueError: Queue <FakeQueue> is closed");
  EXPECT_EQ(py.show("bare.get()"), "raised builtins.ValueError: Queue is closed");
  // The item put before is still in the channel.
  EXPECT_EQ(py.show("port().get(False)"), "1");
}

TEST_F(QueuePortTest, AClosedOrMissingEndRaisesOSError) {
  ASSERT_TRUE(py.exec("writer_only = QueuePort(None, ch, None, None, pickle.dumps, pickle.loads)\n"
                      "reader_only = QueuePort(None, None, ch, None, pickle.dumps, pickle.loads)\n"))
      << take_error();
  EXPECT_EQ(py.show("writer_only.get(False)"), "raised builtins.OSError: this queue end cannot get");
  EXPECT_EQ(py.show("reader_only.put(1)"), "raised builtins.OSError: this queue end cannot put");
  ASSERT_TRUE(py.exec("p = port()\nch.close()")) << take_error();
  EXPECT_EQ(py.show("p.put(1)"), "raised builtins.OSError: handle is closed");
  EXPECT_EQ(py.show("p.get(False)"), "raised builtins.OSError: handle is closed");
}

TEST_F(QueuePortTest, APutThatCannotBeSentRaisesAndGivesItsSlotBack) {
  ASSERT_TRUE(py.exec("lonely = Channel.create(role='writer')\n"
                      "s = slots(1)\n"
                      "p = QueuePort(None, lonely, None, s, pickle.dumps, pickle.loads)\n"))
      << take_error();
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(py.show("p.put('x', False)"),
              "raised builtins.BrokenPipeError: [Errno 32] the other end of the channel is closed");
    EXPECT_EQ(py.show("s._get_value()"), "1");
  }
  ASSERT_TRUE(py.exec("lonely.close()")) << take_error();
}

TEST_F(QueuePortTest, ClosingTheChannelWakesAThreadBlockedInGet) {
  ASSERT_TRUE(py.exec("p = port()\nthreading.Timer(0.1, ch.close).start()")) << take_error();
  EXPECT_EQ(py.show("(lambda r: (r[0], r[1] < 5))(timed(p.get, True, 20))"), "('OSError: handle is closed', True)");
}

}  // namespace
}  // namespace mphost::embed
