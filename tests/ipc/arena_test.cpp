#include "mphost/ipc/arena.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <system_error>

#include "mphost/testing/child_process.hpp"
#include "mphost/testing/watchdog.hpp"

namespace mphost::ipc {
namespace {

using namespace std::chrono_literals;
using mphost::testing::run_in_child;
using mphost::testing::watchdog;

// Every byte is in exactly one extent, free or used; free extents never touch.
void expect_consistent(const arena& a) {
  std::vector<std::pair<arena::extent, bool>> all;
  for (const auto& e : a.free_extents()) all.push_back({e, true});
  for (const auto& e : a.used_blocks()) all.push_back({e, false});
  std::sort(all.begin(), all.end(), [](const auto& x, const auto& y) { return x.first.start < y.first.start; });
  std::size_t at = 0;
  bool previous_free = false;
  for (const auto& [e, is_free] : all) {
    ASSERT_EQ(e.start, at);
    ASSERT_LT(e.start, e.stop);
    ASSERT_EQ(e.start % arena::alignment, 0u);
    ASSERT_FALSE(previous_free && is_free) << "two free extents touch at " << e.start;
    previous_free = is_free;
    at = e.stop;
  }
  ASSERT_EQ(at, a.size());
}

TEST(ArenaTest, FreshArenaIsNamelessOwnerOnlyZeroFilledAndAllFree) {
  arena a = arena::create(8192);
  ASSERT_TRUE(a);
  struct stat st {};
  ASSERT_EQ(::fstat(a.fd(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_nlink, 0u);
  EXPECT_EQ(st.st_size, 8192);
  EXPECT_NE(::fcntl(a.fd(), F_GETFD) & FD_CLOEXEC, 0);
  for (std::size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a.data()[i], std::byte{0});
  EXPECT_EQ(a.free_extents(), (std::vector<arena::extent>{{0, 8192}}));
  EXPECT_TRUE(a.used_blocks().empty());
}

TEST(ArenaTest, ZeroSizeIsRefused) {
  EXPECT_THROW(arena::create(0), std::system_error);
}

TEST(ArenaTest, BlocksAreAlignedRoundedAndPackedFromTheLowEnd) {
  arena a = arena::create(4096);
  EXPECT_EQ(a.allocate(0), (arena::extent{0, 16}));
  EXPECT_EQ(a.allocate(1), (arena::extent{16, 32}));
  EXPECT_EQ(a.allocate(16), (arena::extent{32, 48}));
  EXPECT_EQ(a.allocate(17), (arena::extent{48, 80}));
  EXPECT_EQ(a.blocks_in_use(), 4u);
  EXPECT_EQ(a.free_extents(), (std::vector<arena::extent>{{80, 4096}}));
  expect_consistent(a);
}

TEST(ArenaTest, NoRoomIsAnOutcomeNotAnError) {
  arena a = arena::create(4096);
  EXPECT_FALSE(a.allocate(4097));
  EXPECT_FALSE(a.allocate(static_cast<std::size_t>(-1)));
  ASSERT_TRUE(a.allocate(4096));
  EXPECT_FALSE(a.allocate(1));
  EXPECT_TRUE(a.free_extents().empty());
}

TEST(ArenaTest, ReleasedBlocksMergeWithBothNeighboursAndAreReused) {
  arena a = arena::create(4096);
  const auto x = *a.allocate(100);
  const auto y = *a.allocate(100);
  const auto z = *a.allocate(100);
  a.release(x.start);
  a.release(z.start);  // merges with the tail
  EXPECT_EQ(a.free_extents(), (std::vector<arena::extent>{{x.start, x.stop}, {z.start, 4096}}));
  a.release(y.start);  // merges with both sides: the arena is whole again
  EXPECT_EQ(a.free_extents(), (std::vector<arena::extent>{{0, 4096}}));
  EXPECT_EQ(a.allocate(100), x);
  expect_consistent(a);
}

TEST(ArenaTest, ReusedBytesAreClearedAndFreshPagesAreNotTouched) {
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  arena a = arena::create(64 * page);
  const auto x = *a.allocate(100);
  std::memset(a.data() + x.start, 0xab, x.stop - x.start);
  a.release(x.start);
  const auto y = *a.allocate(200);  // covers x's bytes and fresh ones
  for (std::size_t i = y.start; i < y.stop; ++i) ASSERT_EQ(a.data()[i], std::byte{0}) << i;
  // A large block beyond every earlier one: none of its pages was faulted in.
  const auto big = *a.allocate(32 * page);
  const std::size_t first_page = (big.start + page - 1) / page * page;
  std::vector<unsigned char> resident(32);
  ASSERT_EQ(::mincore(a.data() + first_page, 16 * page, resident.data()), 0);
  for (std::size_t i = 0; i < 16; ++i) EXPECT_EQ(resident[i] & 1, 0) << "page " << i;
}

TEST(ArenaTest, FirstFitTakesTheLowestHoleThatIsLargeEnough) {
  arena a = arena::create(4096);
  const auto small = *a.allocate(32);
  a.allocate(16);
  const auto large = *a.allocate(256);
  a.allocate(16);
  a.release(small.start);
  a.release(large.start);
  EXPECT_EQ(a.allocate(64)->start, large.start);  // the small hole is too small
  EXPECT_EQ(a.allocate(32)->start, small.start);
  expect_consistent(a);
}

TEST(ArenaTest, ReleasingWhatIsNotABlockInUseIsRefused) {
  arena a = arena::create(4096);
  const auto x = *a.allocate(64);
  EXPECT_THROW(a.release(x.start + 16), std::system_error);
  a.release(x.start);
  EXPECT_THROW(a.release(x.start), std::system_error);
  expect_consistent(a);
}

TEST(ArenaTest, RandomAllocationsKeepEveryByteAccountedFor) {
  arena a = arena::create(1 << 16);
  std::mt19937 rng(1234);
  std::vector<arena::extent> live;
  for (int i = 0; i < 5000; ++i) {
    if (!live.empty() && (rng() % 3 == 0 || live.size() > 60)) {
      const std::size_t k = rng() % live.size();
      a.release(live[k].start);
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(k));
    } else if (auto block = a.allocate(rng() % 2000)) {
      live.push_back(*block);
    }
    if (i % 250 == 0) expect_consistent(a);
  }
  for (const auto& b : live) a.release(b.start);
  EXPECT_EQ(a.free_extents(), (std::vector<arena::extent>{{0, a.size()}}));
  EXPECT_EQ(a.blocks_in_use(), 0u);
}

TEST(ArenaTest, AdoptedDescriptorMapsTheSameMemoryAndOwnsNoSpace) {
  arena a = arena::create(4096);
  std::strcpy(reinterpret_cast<char*>(a.data() + 100), "shared");
  arena b = arena::adopt(::dup(a.fd()), 4096);
  EXPECT_STREQ(reinterpret_cast<const char*>(b.data() + 100), "shared");
  EXPECT_TRUE(b.free_extents().empty());
  EXPECT_FALSE(b.allocate(1));
  std::strcpy(reinterpret_cast<char*>(b.data()), "back");
  EXPECT_STREQ(reinterpret_cast<const char*>(a.data()), "back");
}

TEST(ArenaTest, AdoptRefusesASizeLargerThanTheFileAndClosesTheDescriptor) {
  arena a = arena::create(4096);
  const int fd = ::dup(a.fd());
  EXPECT_THROW(arena::adopt(fd, 8192), std::system_error);
  EXPECT_EQ(::fcntl(fd, F_GETFD), -1);  // closed
}

TEST(ArenaTest, ForkChildWritesAreSeenByTheParent) {
  watchdog guard(20s);
  arena a = arena::create(4096);
  const auto block = *a.allocate(64);
  const auto result = run_in_child([&] {
    std::strcpy(reinterpret_cast<char*>(a.data() + block.start), "from the child");
    return 0;
  });
  ASSERT_TRUE(result.exited);
  EXPECT_EQ(result.code, 0);
  EXPECT_STREQ(reinterpret_cast<const char*>(a.data() + block.start), "from the child");
}

TEST(ArenaTest, MovedArenaKeepsItsMemoryAndBookkeeping) {
  arena a = arena::create(4096);
  const int fd = a.fd();
  const auto block = *a.allocate(64);
  arena b = std::move(a);
  EXPECT_FALSE(a);
  EXPECT_EQ(b.fd(), fd);
  EXPECT_EQ(b.used_blocks(), (std::vector<arena::extent>{block}));
  b.release(block.start);
  b = arena::create(8192);
  EXPECT_EQ(::fcntl(fd, F_GETFD), -1);  // the old one was closed
}

}  // namespace
}  // namespace mphost::ipc
