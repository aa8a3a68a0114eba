// `_mphost.Channel` (channel_binding.cpp, channel_send.cpp) through the
// Python C API: send, recv and poll with their timeouts, the end of the
// stream, a closed handle raising OSError('handle is closed') (also in a
// thread blocked in recv), and a signal during a blocked recv.
#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <string>

#include "python_test_support.hpp"

namespace mphost::embed {
namespace {

using namespace std::chrono_literals;
using testing::scope;
using testing::seconds_since;
using testing::take_error;

class ChannelBindingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(py.exec("import signal, threading, time\n"
                        "from _mphost import Channel\n"
                        "hits = []\n"
                        "def note(signo, frame): hits.append(signo)\n"
                        "def interrupt(signo, frame): raise KeyboardInterrupt('from the handler')\n"
                        "def timed(fn, *args):\n"
                        "    start = time.monotonic()\n"
                        "    try:\n"
                        "        return fn(*args), time.monotonic() - start\n"
                        "    except BaseException as e:\n"
                        "        return type(e).__name__ + ': ' + str(e), time.monotonic() - start\n"
                        "ch = Channel.create()\n"))
        << take_error();
  }
  void TearDown() override {
    EXPECT_TRUE(py.exec("signal.signal(signal.SIGUSR1, signal.SIG_IGN)\nch.close()")) << take_error();
  }

  scope py;
};

TEST_F(ChannelBindingTest, AMessageSentIsReceivedOnce) {
  EXPECT_EQ(py.show("ch.poll()"), "False");
  EXPECT_EQ(py.show("(type(ch.send(b'hello')), ch.poll(), ch.recv(), ch.poll())"), "(<class 'int'>, True, b'hello', False)");
  // Any bytes-like object, or parts sent as one message.
  EXPECT_EQ(py.show("(ch.send(bytearray(b'ab')) > 0, ch.recv())"), "(True, b'ab')");
  EXPECT_EQ(py.show("(ch.send([b'con', memoryview(b'cat')]) > 0, ch.recv())"), "(True, b'concat')");
  EXPECT_EQ(py.show("(ch.send(b'') > 0, ch.recv())"), "(True, b'')");
}

TEST_F(ChannelBindingTest, RecvAndPollWaitNoLongerThanTheirTimeout) {
  EXPECT_EQ(py.show("(lambda r: (r[0], 0.05 <= r[1] < 3))(timed(ch.recv, 0.05))"), "(None, True)");
  EXPECT_EQ(py.show("(lambda r: (r[0], 0.05 <= r[1] < 3))(timed(ch.poll, 0.05))"), "(False, True)");
  EXPECT_EQ(py.show("(lambda r: (r[0], r[1] < 0.5))(timed(ch.poll, -1))"), "(False, True)");
  EXPECT_EQ(py.show("ch.recv(float('nan'))"), "raised builtins.ValueError: timeout must not be NaN");
  EXPECT_EQ(py.show("ch.poll('soon')"), "raised builtins.TypeError: must be real number, not str");
}

TEST_F(ChannelBindingTest, AWaitingRecvGetsAMessageSentByAnotherThread) {
  ASSERT_TRUE(py.exec("threading.Timer(0.1, ch.send, (b'late',)).start()")) << take_error();
  EXPECT_EQ(py.show("(lambda r: (r[0], r[1] < 5))(timed(ch.recv, 10))"), "(b'late', True)");
}

TEST_F(ChannelBindingTest, WithNoWriterLeftRecvRaisesEOFErrorOnceDrained) {
  ASSERT_TRUE(py.exec("reader = Channel.create(role='reader')\n"
                      "writer = Channel.open(reader.name, 'writer')\n"
                      "writer.send(b'last')\n"
                      "writer.close()\n"))
      << take_error();
  EXPECT_EQ(py.show("(reader.poll(), reader.recv(), reader.poll())"), "(True, b'last', True)");
  EXPECT_EQ(py.show("reader.recv(5)"), "raised builtins.EOFError: ");
  ASSERT_TRUE(py.exec("reader.close()")) << take_error();
}

TEST_F(ChannelBindingTest, WithNoReaderLeftSendRaisesBrokenPipeError) {
  ASSERT_TRUE(py.exec("writer = Channel.create(role='writer')\n")) << take_error();
  EXPECT_EQ(py.show("writer.send(b'x', 5)"),
            "raised builtins.BrokenPipeError: [Errno 32] the other end of the channel is closed");
  ASSERT_TRUE(py.exec("writer.close()")) << take_error();
}

TEST_F(ChannelBindingTest, AClosedHandleRaisesOSErrorHandleIsClosed) {
  ASSERT_TRUE(py.exec("ch.close()")) << take_error();
  EXPECT_EQ(py.show("ch.closed"), "True");
  for (const char* call : {"ch.send(b'x')", "ch.recv()", "ch.poll()", "ch.poll(None)", "ch.fileno()"}) {
    EXPECT_EQ(py.show(call), "raised builtins.OSError: handle is closed") << call;
  }
}

TEST_F(ChannelBindingTest, ClosingWakesAThreadBlockedInRecv) {
  ASSERT_TRUE(py.exec("threading.Timer(0.1, ch.close).start()")) << take_error();
  EXPECT_EQ(py.show("(lambda r: (r[0], r[1] < 5))(timed(ch.recv, 20))"), "('OSError: handle is closed', True)");
}

TEST_F(ChannelBindingTest, ABoundedSendWaitsForRoomUntilItsTimeout) {
  ASSERT_TRUE(py.exec("small = Channel.create(capacity=4096)\n"
                      "while small.send(b'x' * 100, 0) is not False: pass\n"))
      << take_error();
  EXPECT_EQ(py.show("(lambda r: (r[0], 0.05 <= r[1] < 3))(timed(small.send, b'y' * 100, 0.05))"), "(False, True)");
  ASSERT_TRUE(py.exec("threading.Timer(0.1, small.recv).start()")) << take_error();
  EXPECT_EQ(py.show("(lambda r: (r[0] > 0, r[1] < 5))(timed(small.send, b'y' * 100, 10))"), "(True, True)");
  ASSERT_TRUE(py.exec("small.close()")) << take_error();
}

TEST_F(ChannelBindingTest, ASignalWhoseHandlerRaisesInterruptsABlockedRecv) {
  ASSERT_TRUE(py.exec("signal.signal(signal.SIGUSR1, interrupt)")) << take_error();
  const auto start = std::chrono::steady_clock::now();
  {
    // Not a multiple of 100 ms: the core waits in slices of that length
    // (to check the peer is alive), and a signal that lands between two
    // slices is only seen when the wait ends.
    const testing::signal_later sender(SIGUSR1, 130ms);
    EXPECT_EQ(py.show("ch.recv(20)"), "raised builtins.KeyboardInterrupt: from the handler");
  }
  EXPECT_LT(seconds_since(start), 10.0);
  EXPECT_EQ(py.show("(ch.send(b'still works') > 0, ch.recv(1))"), "(True, b'still works')");
}

TEST_F(ChannelBindingTest, ASignalWhoseHandlerReturnsLeavesTheRecvTimeoutWhole) {
  ASSERT_TRUE(py.exec("signal.signal(signal.SIGUSR1, note)")) << take_error();
  const auto start = std::chrono::steady_clock::now();
  {
    const testing::signal_later sender(SIGUSR1, 50ms);
    EXPECT_EQ(py.show("ch.recv(0.3)"), "None");
  }
  EXPECT_GE(seconds_since(start), 0.3);
  EXPECT_EQ(py.show("hits"), testing::list_repr(SIGUSR1));
}

TEST_F(ChannelBindingTest, ReceivingDescriptorsNeedsASocket) {
  EXPECT_EQ(py.show("ch.receive_fds(1, 1, 0)"), "raised builtins.OSError: this connection has no socket");
}

}  // namespace
}  // namespace mphost::embed
