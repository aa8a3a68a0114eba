// `_mphost.stream_*` (connection_binding.cpp) through the Python C API: the
// stdlib's wire format over a socket pair, the outcomes a Connection turns
// into its errors (None for "bad message length", the message for
// BufferTooShort), end of file as the stdlib reports it, errno errors, and a
// signal during a blocked read.
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

class ConnectionBindingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(py.exec("import signal, socket, struct, threading\n"
                        "from _mphost import stream_send, stream_recv, stream_recv_into\n"
                        "from _mphost import stream_prefix, stream_prefix_at\n"
                        "hits = []\n"
                        "def note(signo, frame): hits.append(signo)\n"
                        "def interrupt(signo, frame): raise KeyboardInterrupt('from the handler')\n"
                        "a, b = socket.socketpair()\n"
                        "def raw(data): a.sendall(data)\n"
                        "def wire(n=4096): return b.recv(n)\n"))
        << take_error();
  }
  void TearDown() override {
    EXPECT_TRUE(py.exec("signal.signal(signal.SIGUSR1, signal.SIG_IGN)\na.close()\nb.close()")) << take_error();
  }

  scope py;
};

TEST_F(ConnectionBindingTest, PrefixesAreTheStdlibs) {
  EXPECT_EQ(py.show("stream_prefix(5) == struct.pack('!i', 5)"), "True");
  EXPECT_EQ(py.show("stream_prefix(2**31) == struct.pack('!i', -1) + struct.pack('!Q', 2**31)"), "True");
  EXPECT_EQ(py.show("stream_prefix(6, 5) == struct.pack('!i', -1) + struct.pack('!Q', 6)"), "True");
  EXPECT_EQ(py.show("stream_prefix(-1)"), "raised builtins.ValueError: negative length");
  EXPECT_EQ(py.show("stream_prefix_at(b'xx' + struct.pack('!i', 7), 2, 6)"), "(4, 7)");
  EXPECT_EQ(py.show("stream_prefix_at(b'\\0\\0', 0, 2)"), "(4, None)");
  EXPECT_EQ(py.show("stream_prefix_at(struct.pack('!i', -1) + b'\\0\\0', 0, 6)"), "(12, None)");
  EXPECT_EQ(py.show("stream_prefix_at(struct.pack('!i', -1) + struct.pack('!Q', 9), 0, 99)"), "(12, 9)");
  EXPECT_EQ(py.show("stream_prefix_at(struct.pack('!i', -2), 0, 4)"), "raised builtins.OSError: bad message length");
}

TEST_F(ConnectionBindingTest, MessagesGoOutInTheStdlibsFormat) {
  EXPECT_EQ(py.show("(stream_send(a, b'hello'), wire())"), "(None, b'\\x00\\x00\\x00\\x05hello')");
  // Parts of any bytes-like kind travel as one message.
  EXPECT_EQ(py.show("(stream_send(a.fileno(), [b'ab', b'', memoryview(b'cd'), bytearray(b'e')]), wire())"),
            "(None, b'\\x00\\x00\\x00\\x05abcde')");
  EXPECT_EQ(py.show("(stream_send(a, (b'',)), wire())"), "(None, b'\\x00\\x00\\x00\\x00')");
  EXPECT_EQ(py.show("(stream_send(a, b'xyz', 2), wire())"),
            "(None, b'\\xff\\xff\\xff\\xff\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x03xyz')");
  EXPECT_EQ(py.show("stream_send(a, [b'ok', 'text'])"),
            "raised builtins.TypeError: a bytes-like object is required, not 'str'");
}

TEST_F(ConnectionBindingTest, MessagesComeBackWholeAndNoFurther) {
  ASSERT_TRUE(py.exec("raw(struct.pack('!i', 3) + b'one' + struct.pack('!i', -1) + struct.pack('!Q', 3) + b'two')"));
  EXPECT_EQ(py.show("stream_recv(b)"), "b'one'");
  EXPECT_EQ(py.show("stream_recv(b.fileno(), None)"), "b'two'");
  // A body larger than what is read together with the prefix.
  ASSERT_TRUE(py.exec("big = bytes(range(256)) * 1024\n"
                      "t = threading.Thread(target=stream_send, args=(a, big))\nt.start()\n"));
  EXPECT_EQ(py.show("stream_recv(b) == big"), "True");
  ASSERT_TRUE(py.exec("t.join()"));
}

TEST_F(ConnectionBindingTest, TooLongOrCorruptMessagesAreNone) {
  // Longer than maxlength: only the prefix is taken.
  ASSERT_TRUE(py.exec("raw(struct.pack('!i', 5) + b'12345')"));
  EXPECT_EQ(py.show("(stream_recv(b, 4), wire())"), "(None, b'12345')");
  ASSERT_TRUE(py.exec("raw(struct.pack('!i', 5) + b'12345')"));
  EXPECT_EQ(py.show("stream_recv(b, 5)"), "b'12345'");
  ASSERT_TRUE(py.exec("raw(struct.pack('!i', -7) + b'junk')"));
  EXPECT_EQ(py.show("(stream_recv(b), wire())"), "(None, b'junk')");
  ASSERT_TRUE(py.exec("raw(struct.pack('!i', -7))"));
  EXPECT_EQ(py.show("stream_recv_into(b, bytearray(10), 0)"), "None");
}

TEST_F(ConnectionBindingTest, RecvIntoFillsTheBufferOrHandsTheMessageBack) {
  ASSERT_TRUE(py.exec("buf = bytearray(8)\nraw(struct.pack('!i', 3) + b'abc')"));
  EXPECT_EQ(py.show("(stream_recv_into(b, buf, 5), buf)"), "(3, bytearray(b'\\x00\\x00\\x00\\x00\\x00abc'))");
  ASSERT_TRUE(py.exec("raw(struct.pack('!i', 4) + b'wxyz')"));
  EXPECT_EQ(py.show("(stream_recv_into(b, buf, 5), buf)"), "(b'wxyz', bytearray(b'\\x00\\x00\\x00\\x00\\x00abc'))");
  EXPECT_EQ(py.show("stream_recv_into(b, buf, 9)"), "raised builtins.ValueError: offset out of range");
  EXPECT_EQ(py.show("stream_recv_into(b, b'read-only', 0)"),
            "raised builtins.BufferError: Object is not writable.");
}

TEST_F(ConnectionBindingTest, EndOfFileIsEofErrorBetweenPiecesAndOsErrorInside) {
  EXPECT_EQ(py.show("(a.shutdown(socket.SHUT_WR), stream_recv(b))[1]"), "raised builtins.EOFError: ");
  ASSERT_TRUE(py.exec("a.close(); b.close()\na, b = socket.socketpair()\nraw(b'\\0\\0')\na.shutdown(socket.SHUT_WR)"));
  EXPECT_EQ(py.show("stream_recv(b)"), "raised builtins.OSError: got end of file during message");
  ASSERT_TRUE(py.exec("a.close(); b.close()\na, b = socket.socketpair()\nraw(struct.pack('!i', 10) + b'abc')\n"
                      "a.shutdown(socket.SHUT_WR)"));
  EXPECT_EQ(py.show("stream_recv_into(b, bytearray(20), 0)"), "raised builtins.OSError: got end of file during message");
  ASSERT_TRUE(py.exec("a.close(); b.close()\na, b = socket.socketpair()\nraw(struct.pack('!i', 10))\n"
                      "a.shutdown(socket.SHUT_WR)"));
  EXPECT_EQ(py.show("stream_recv(b)"), "raised builtins.EOFError: ");
}

TEST_F(ConnectionBindingTest, ErrnoFailuresAreTheirOsErrorSubclasses) {
  // As in a Python program, SIGPIPE is ignored: a write to a closed peer fails.
  ASSERT_TRUE(py.exec("b.close()\nold = signal.signal(signal.SIGPIPE, signal.SIG_IGN)"));
  EXPECT_EQ(py.show("stream_send(a, b'x')"), "raised builtins.BrokenPipeError: [Errno 32] Broken pipe");
  ASSERT_TRUE(py.exec("signal.signal(signal.SIGPIPE, old)"));
  EXPECT_EQ(py.show("stream_recv(-1)"), "raised builtins.ValueError: file descriptor cannot be a negative integer (-1)");
}

TEST_F(ConnectionBindingTest, ASignalDuringABlockedRecvRunsItsHandlerAndTheReadGoesOn) {
  ASSERT_TRUE(py.exec("signal.signal(signal.SIGUSR1, note)\n"
                      "late = threading.Timer(0.3, raw, (struct.pack('!i', 4) + b'late',))\nlate.start()"))
      << take_error();
  {
    const testing::signal_later sender(SIGUSR1, 50ms);
    EXPECT_EQ(py.show("stream_recv(b)"), "b'late'");
  }
  EXPECT_EQ(py.show("hits"), testing::list_repr(SIGUSR1));
  ASSERT_TRUE(py.exec("late.join()"));
}

TEST_F(ConnectionBindingTest, ASignalWhoseHandlerRaisesEndsABlockedRecv) {
  ASSERT_TRUE(py.exec("signal.signal(signal.SIGUSR1, interrupt)")) << take_error();
  const auto start = std::chrono::steady_clock::now();
  {
    const testing::signal_later sender(SIGUSR1, 50ms);
    EXPECT_EQ(py.show("stream_recv(b)"), "raised builtins.KeyboardInterrupt: from the handler");
  }
  EXPECT_LT(seconds_since(start), 10.0);
}

}  // namespace
}  // namespace mphost::embed
