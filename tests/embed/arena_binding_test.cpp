// `_mphost.Arena` (arena_binding.cpp) through the Python C API, as heap.py
// uses it: blocks allocated and released, zero-filled even where an earlier
// block wrote, writes through one memoryview seen through another, and the
// errors for a bad size, a double release and a bad descriptor.
#include <gtest/gtest.h>

#include <string>

#include "python_test_support.hpp"

namespace mphost::embed {
namespace {

using testing::scope;
using testing::take_error;

class ArenaBindingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(py.exec("import os\nfrom _mphost import Arena\na = Arena(4096)\n")) << take_error();
  }
  std::string after(const std::string& code, const std::string& expr) {
    if (!py.exec(code)) return "raised " + take_error();
    return py.show(expr);
  }

  scope py;
};

TEST_F(ArenaBindingTest, BlocksAreCarvedFromTheLowEndAndMergedWhenReleased) {
  EXPECT_EQ(py.show("(a.size, a.blocks_in_use, a.free_extents(), a.used_blocks())"), "(4096, 0, [(0, 4096)], [])");
  // Sizes round up to 16 bytes; 0 counts as 1.
  EXPECT_EQ(py.show("(a.allocate(10), a.allocate(0), a.allocate(17))"), "((0, 16), (16, 32), (32, 64))");
  EXPECT_EQ(py.show("(a.blocks_in_use, a.free_extents())"), "(3, [(64, 4096)])");
  EXPECT_EQ(py.show("(a.release(16), a.free_extents(), a.allocate(16))"), "(None, [(16, 32), (64, 4096)], (16, 32))");
  EXPECT_EQ(py.show("(a.release(0), a.release(16), a.release(32), a.free_extents(), a.used_blocks())"),
            "(None, None, None, [(0, 4096)], [])");
  // Full: None, not an error; the caller starts another arena.
  EXPECT_EQ(py.show("(a.allocate(4096), a.allocate(1), a.allocate(10**9))"), "((0, 4096), None, None)");
}

TEST_F(ArenaBindingTest, EveryBlockComesZeroFilledEvenWhereAnEarlierOneWrote) {
  ASSERT_TRUE(py.exec("m = memoryview(a)\n"
                      "start, stop = a.allocate(100)\n"
                      "m[start:stop] = b'\\xff' * (stop - start)\n"
                      "a.release(start)\n"
                      "again = a.allocate(200)\n"))
      << take_error();
  EXPECT_EQ(py.show("(again[0] == start, bytes(m[again[0]:again[1]]) == bytes(again[1] - again[0]))"),
            "(True, True)");
  EXPECT_EQ(py.show("bytes(m) == bytes(4096)"), "True");
}

TEST_F(ArenaBindingTest, WritesThroughOneViewAreSeenThroughAnother) {
  ASSERT_TRUE(py.exec("m1, m2 = memoryview(a), memoryview(a)\n"
                      "start, stop = a.allocate(32)\n"
                      "m1[start:start + 5] = b'hello'\n"
                      "m2.cast('B')[start + 5] = 33\n"))
      << take_error();
  EXPECT_EQ(py.show("(m1.readonly, m1.format, m1.nbytes, bytes(m2[start:start + 6]), bytes(m1[start + 5:start + 6]))"),
            "(False, 'B', 4096, b'hello!', b'!')");
  // The mapping outlives the name: the views keep the arena alive.
  EXPECT_EQ(after("del a, m2\nimport gc\ngc.collect()", "bytes(m1[start:start + 6])"), "b'hello!'");
}

TEST_F(ArenaBindingTest, AnAdoptedDescriptorMapsTheSameBytes) {
  ASSERT_TRUE(py.exec("start, stop = a.allocate(8)\n"
                      "memoryview(a)[start:start + 8] = b'shared!!'\n"
                      "b = Arena.adopt(os.dup(a.fd), a.size)\n"))
      << take_error();
  EXPECT_EQ(py.show("(b.size, b.blocks_in_use, b.free_extents(), bytes(memoryview(b)[start:start + 8]))"),
            "(4096, 0, [], b'shared!!')");
  ASSERT_TRUE(py.exec("memoryview(b)[0:3] = b'abc'")) << take_error();
  EXPECT_EQ(py.show("bytes(memoryview(a)[0:3])"), "b'abc'");
}

TEST_F(ArenaBindingTest, MisuseRaisesOSErrorOrTypeError) {
  EXPECT_EQ(py.show("a.release(0)"), "raised builtins.OSError: [Errno 22] arena release: not a block in use: Invalid argument");
  EXPECT_EQ(after("start, stop = a.allocate(16)\na.release(start)", "a.release(start)"),
            "raised builtins.OSError: [Errno 22] arena release: not a block in use: Invalid argument");
  EXPECT_EQ(after("start, stop = a.allocate(32)", "a.release(start + 16)"),
            "raised builtins.OSError: [Errno 22] arena release: not a block in use: Invalid argument");
  EXPECT_EQ(py.show("a.used_blocks()"), "[(0, 32)]");
  EXPECT_EQ(py.show("Arena(0)"), "raised builtins.OSError: [Errno 22] arena size: Invalid argument");
  EXPECT_EQ(py.show("Arena(-1)").rfind("raised builtins.TypeError: __init__(): incompatible constructor arguments", 0), 0u);
  EXPECT_EQ(py.show("a.allocate(-1)").rfind("raised builtins.TypeError: allocate(): incompatible function arguments", 0), 0u);
  EXPECT_EQ(py.show("Arena.adopt(-1, 10)"), "raised builtins.OSError: [Errno 9] fstat: Bad file descriptor");
}

}  // namespace
}  // namespace mphost::embed
