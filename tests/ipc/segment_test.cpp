#include "mphost/ipc/segment.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <set>

#include "mphost/testing/child_process.hpp"
#include "mphost/testing/watchdog.hpp"
#include "shm_check.hpp"

namespace mphost::ipc {
namespace {

using namespace std::chrono_literals;
using mphost::testing::run_in_child;
using mphost::testing::watchdog;

class SegmentTest : public testing::shm_checked_test {};

TEST_F(SegmentTest, CreatedSegmentIsOwnerOnlyZeroFilledAndOfTheAskedSize) {
  segment seg = segment::create(10000, testing::test_prefix());
  testing::name_guard names(seg.name());
  ASSERT_TRUE(seg);
  EXPECT_GE(seg.size(), 10000u);
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm/" + seg.name()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_uid, ::geteuid());
  EXPECT_EQ(st.st_size, 10000);
  for (std::size_t i = 0; i < 10000; ++i) ASSERT_EQ(seg.data()[i], std::byte{0});
}

TEST_F(SegmentTest, NamesCarryThePrefixAndNinetySixRandomBits) {
  std::set<std::string> names;
  for (int i = 0; i < 100; ++i) {
    const std::string n = segment::random_name("pfx-");
    EXPECT_EQ(n.size(), 4u + 24u);
    EXPECT_EQ(n.compare(0, 4, "pfx-"), 0);
    names.insert(n);
  }
  EXPECT_EQ(names.size(), 100u);
}

TEST_F(SegmentTest, AnotherProcessOpensTheSameMemoryByName) {
  watchdog guard(20s);
  segment seg = segment::create(4096, testing::test_prefix());
  testing::name_guard names(seg.name());
  std::strcpy(reinterpret_cast<char*>(seg.data()), "from the parent");
  const std::string name = seg.name();
  const auto result = run_in_child([&] {
    segment other = segment::open(name);
    if (std::strcmp(reinterpret_cast<const char*>(other.data()), "from the parent") != 0) return 1;
    std::strcpy(reinterpret_cast<char*>(other.data()), "from the child");
    return 0;
  });
  ASSERT_TRUE(result.exited);
  EXPECT_EQ(result.code, 0);
  EXPECT_STREQ(reinterpret_cast<const char*>(seg.data()), "from the child");
}

TEST_F(SegmentTest, OpeningAMissingNameThrowsENOENT) {
  try {
    segment::open(testing::test_prefix() + "missing");
    FAIL() << "opened a segment that does not exist";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
  }
}

TEST_F(SegmentTest, CreatingAnExistingNameThrowsEEXIST) {
  const std::string name = testing::test_prefix() + "twice";
  testing::name_guard names(name);
  segment first = segment::create_named(name, 4096);
  try {
    segment::create_named(name, 4096);
    FAIL() << "created the same name twice";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::file_exists);
  }
}

TEST_F(SegmentTest, InvalidNamesAndSizesThrowEINVAL) {
  for (const std::string& bad : {std::string(), std::string("/"), std::string("a/b"), std::string(300, 'x')}) {
    try {
      segment::create_named(bad, 4096);
      ADD_FAILURE() << "accepted name '" << bad << "'";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::invalid_argument) << bad;
    }
  }
  try {
    segment::create(0, testing::test_prefix());
    ADD_FAILURE() << "accepted size 0";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::invalid_argument);
  }
}

TEST_F(SegmentTest, RemoveReportsWhetherTheNameExisted) {
  segment seg = segment::create(4096, testing::test_prefix());
  EXPECT_TRUE(testing::shm_exists(seg.name()));
  EXPECT_TRUE(seg.unlink());
  EXPECT_FALSE(testing::shm_exists(seg.name()));
  EXPECT_FALSE(segment::remove(seg.name()));
  // The mapping outlives the name.
  seg.data()[0] = std::byte{1};
  EXPECT_EQ(seg.data()[0], std::byte{1});
}

TEST_F(SegmentTest, MoveTransfersTheMapping) {
  segment a = segment::create(4096, testing::test_prefix());
  testing::name_guard names(a.name());
  void* base = a.base();
  segment b = std::move(a);
  EXPECT_FALSE(a);
  EXPECT_EQ(b.base(), base);
  b.reset();
  EXPECT_FALSE(b);
}

TEST_F(SegmentTest, LeadingSlashNamesWork) {
  const std::string name = "/" + testing::test_prefix() + "slash";
  testing::name_guard names(name);
  segment a = segment::create_named(name, 4096);
  segment b = segment::open(name.substr(1));
  a.data()[5] = std::byte{9};
  EXPECT_EQ(b.data()[5], std::byte{9});
}

}  // namespace
}  // namespace mphost::ipc
