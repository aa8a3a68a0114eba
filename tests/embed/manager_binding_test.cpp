// _mphost.ManagerDispatch and the manager frame helpers seen from Python, in
// one process: frames as the client makes and reads them, a link served by a
// native thread and one served by the Python thread that asked, answers
// that raise or need the pickler, and stop().
#include <gtest/gtest.h>

#include <string>

#include "python_test_support.hpp"

namespace mphost::embed {
namespace {

using testing::scope;
using testing::take_error;

class ManagerBindingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(py.exec(
        "import pickle, threading, traceback\n"
        "import _mphost\n"
        "from fractions import Fraction as Odd\n"
        "dumped = []\n"
        "def dump(obj):\n"
        "    dumped.append(obj)\n"
        "    return pickle.dumps(obj)\n"
        "seen = []\n"
        "def answer(ident, name, args, kwds):\n"
        "    seen.append((ident, name, threading.get_ident()))\n"
        "    if name == 'fail': raise KeyError('no such thing')\n"
        "    if name == 'none': return ('#RETURN', None)\n"
        "    if name == 'odd': return ('#RETURN', Odd(args[0]))\n"
        "    if name == 'bad': return 42\n"
        "    return ('#RETURN', (ident, name, args, kwds))\n"
        "encoded = []\n"
        "def encode(tag, payload):\n"
        "    encoded.append(tag)\n"
        "    return bytes((_mphost.MANAGER_REPLY_TAGS.index(tag),)) + pickle.dumps(payload)\n"
        "def failure(exc):\n"
        "    return 'failed: %r\\n' % (exc,)\n"
        "import os\n"
        "def names_there(handed):\n"
        "    return [os.path.exists('/dev/shm/' + handed[i].lstrip('/')) for i in (0, 2)]\n"
        "def connect(handed):\n"
        "    req, req_ticket, rep, rep_ticket = handed\n"
        "    return (_mphost.Channel.open(req, 'writer', req_ticket), _mphost.Channel.open(rep, 'reader', rep_ticket))\n"
        "def call(ends, ident, name, args=(), kwds={}):\n"
        "    ends[0].send(_mphost.manager_request(ident, name, args, kwds, dump))\n"
        "    return _mphost.manager_reply(ends[1].recv(10.0), pickle.loads)\n"))
        << take_error();
  }

  scope py;
};

TEST_F(ManagerBindingTest, RequestFramesCarryFlagsNamesAndThePickledArguments) {
  ASSERT_TRUE(py.exec("f = _mphost.manager_request('a1', 'get', ('k',), {}, dump)")) << take_error();
  EXPECT_EQ(py.show("(f[:10], pickle.loads(f[10:]), dumped)"),
            "(b'\\x00\\x02\\x00\\x03\\x00a1get', ('k',), [])");
  ASSERT_TRUE(py.exec("f = _mphost.manager_request('a1', 'pop', (1,), {'d': 2}, dump)")) << take_error();
  EXPECT_EQ(py.show("(f[0], pickle.loads(f[10:]))"), "(1, ((1,), {'d': 2}))");
  ASSERT_TRUE(py.exec("f = _mphost.manager_request(None, 'incref', (), {}, dump)")) << take_error();
  EXPECT_EQ(py.show("f"), "b'\\x02\\x00\\x00\\x06\\x00incref'");
  // Arguments the builtin codec does not take go to dump().
  ASSERT_TRUE(py.exec("f = _mphost.manager_request('a1', 'set', (Odd(3),), {}, dump)")) << take_error();
  EXPECT_EQ(py.show("(pickle.loads(f[10:]) == (Odd(3),), len(dumped))"), "(True, 1)");
  EXPECT_EQ(py.show("_mphost.manager_request('a1', 'x' * 70000, (), {}, dump)"),
            "raised builtins.ValueError: manager request name too long: message too large");
}

TEST_F(ManagerBindingTest, ReplyFramesGiveTheStdlibsTags) {
  EXPECT_EQ(py.show("_mphost.manager_reply(b'\\x05', pickle.loads)"), "('#RETURN', None)");
  EXPECT_EQ(py.show("_mphost.manager_reply(b'\\x00' + pickle.dumps([1, 'a']), pickle.loads)"), "('#RETURN', [1, 'a'])");
  EXPECT_EQ(py.show("_mphost.manager_reply(b'\\x01' + pickle.dumps(KeyError('k')), pickle.loads)"),
            "('#ERROR', KeyError('k'))");
  EXPECT_EQ(py.show("_mphost.manager_reply(b'\\x04' + pickle.dumps(Odd(1)), pickle.loads)[1] == Odd(1)"), "True");
  EXPECT_EQ(py.show("_mphost.manager_reply(b'\\x09', pickle.loads)"),
            "raised builtins.ValueError: a manager reply frame of 1 bytes with no known tag");
  EXPECT_EQ(py.show("_mphost.MANAGER_REPLY_TAGS"), "('#RETURN', '#ERROR', '#TRACEBACK', '#UNSERIALIZABLE', '#PROXY')");
}

TEST_F(ManagerBindingTest, ALinkThreadAnswersThroughPython) {
  ASSERT_TRUE(py.exec("d = _mphost.ManagerDispatch(answer, encode, pickle.loads, failure)\n"
                      "handed = d.open_link()\n"
                      "ends = connect(handed)\n"))
      << take_error();
  EXPECT_EQ(py.show("call(ends, 'a1', 'get', ('k',))"), "('#RETURN', ('a1', 'get', ('k',), {}))");
  EXPECT_EQ(py.show("call(ends, None, 'create', ('dict',), {'x': 1})"),
            "('#RETURN', (None, 'create', ('dict',), {'x': 1}))");
  EXPECT_EQ(py.show("call(ends, 'a1', 'none')"), "('#RETURN', None)");
  EXPECT_EQ(py.show("(call(ends, 'a1', 'odd', (5,))[1] == Odd(5), encoded)"), "(True, ['#RETURN'])");
  EXPECT_EQ(py.show("call(ends, 'a1', 'fail')"), "('#TRACEBACK', \"failed: KeyError('no such thing')\\n\")");
  EXPECT_EQ(py.show("call(ends, 'a1', 'bad')[0]"), "'#TRACEBACK'");
  // The link lives on after failures, on a thread that is not this one.
  EXPECT_EQ(py.show("(call(ends, 'b', 'get')[0], len({t for _, _, t in seen}), seen[0][2] != threading.get_ident())"),
            "('#RETURN', 1, True)");
  EXPECT_EQ(py.show("d.live_links()"), "1");
  EXPECT_EQ(py.show("names_there(handed)"), "[True, True]");
  ASSERT_TRUE(py.exec("ends[0].close()\nends[1].close()\n")) << take_error();
  EXPECT_EQ(py.show("d.stop(5.0)"), "0");
  // The client's close and the link thread's are the last: the names go.
  EXPECT_EQ(py.show("names_there(handed)"), "[False, False]");
  EXPECT_EQ(py.show("d.open_link()"), "raised builtins.OSError: [Errno 125] manager dispatch stopped: Operation canceled");
}

TEST_F(ManagerBindingTest, ServeHereAnswersOnTheThreadThatAsked) {
  ASSERT_TRUE(py.exec("d = _mphost.ManagerDispatch(answer, encode, pickle.loads, failure)\n"
                      "offers = []\n"
                      "got = threading.Event()\n"
                      "def ready(handed):\n"
                      "    offers.append(handed)\n"
                      "    got.set()\n"
                      "server = threading.Thread(target=d.serve_here, args=(ready,))\n"
                      "server.start()\n"
                      "assert got.wait(10)\n"
                      "ends = connect(offers[0])\n"))
      << take_error();
  EXPECT_EQ(py.show("call(ends, 'q', 'put', (1,))"), "('#RETURN', ('q', 'put', (1,), {}))");
  EXPECT_EQ(py.show("names_there(offers[0])"), "[True, True]");
  EXPECT_EQ(py.show("seen[-1][2] == server.ident"), "True");
  ASSERT_TRUE(py.exec("ends[0].close()\nends[1].close()\nserver.join(10)\n")) << take_error();
  EXPECT_EQ(py.show("(server.is_alive(), d.live_links())"), "(False, 0)");
  EXPECT_EQ(py.show("names_there(offers[0])"), "[False, False]");
  // An offer that cannot be passed on: the error comes back to the caller,
  // and the link's channels go with their names (no client holds a ticket).
  EXPECT_EQ(py.show("d.serve_here(lambda handed: (offers.append(handed), 1 / 0))"),
            "raised builtins.ZeroDivisionError: division by zero");
  EXPECT_EQ(py.show("d.live_links()"), "0");
  EXPECT_EQ(py.show("(len(offers), names_there(offers[-1]))"), "(2, [False, False])");
}

}  // namespace
}  // namespace mphost::embed
