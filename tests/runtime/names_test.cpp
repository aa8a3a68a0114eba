#include "mphost/runtime/names.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

namespace mphost::runtime {
namespace {

TEST(NamesTest, RandomHexHasTheRequestedLengthAndDiffers) {
  const std::string a = random_hex(16);
  const std::string b = random_hex(16);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
}

TEST(NamesTest, PrivateDirectoryIsOwnerOnly) {
  const std::string dir = make_private_directory("mphost-test-");
  struct stat st{};
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  remove_private_directory(dir);
  EXPECT_NE(::stat(dir.c_str(), &st), 0);
}

TEST(NamesTest, SweepRemovesOnlyDirectoriesOfDeadCreators) {
  const std::string mine = make_private_directory("mphost-sweep-test-");
  // A directory named after a pid that cannot exist stands for a dead creator.
  const std::string root = mine.substr(0, mine.rfind('/'));
  const std::string orphan = root + "/mphost-sweep-test-2147483600-deadbeef";
  ASSERT_EQ(::mkdir(orphan.c_str(), 0700), 0);
  EXPECT_EQ(sweep_orphaned_directories("mphost-sweep-test-"), 1);
  struct stat st{};
  EXPECT_NE(::stat(orphan.c_str(), &st), 0);
  EXPECT_EQ(::stat(mine.c_str(), &st), 0);
  remove_private_directory(mine);
}

}  // namespace
}  // namespace mphost::runtime
