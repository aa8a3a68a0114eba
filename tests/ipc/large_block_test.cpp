#include "mphost/ipc/large_block.hpp"

#include <gtest/gtest.h>

#include <cstring>

#include "mphost/ipc/error.hpp"
#include "shm_check.hpp"

namespace mphost::ipc {
namespace {

class LargeBlockTest : public testing::shm_checked_test {
 protected:
  std::string prefix() const { return testing::test_prefix() + "blk.b"; }
};

void expect_corrupt(const block_ref& ref, std::string_view prefix) {
  try {
    large_block::adopt(ref, prefix);
    ADD_FAILURE() << "adopted a bad reference";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), make_error_code(errc::corrupt_frame)) << e.what();
  }
}

TEST_F(LargeBlockTest, AdoptingMapsThePayloadAndRemovesTheName) {
  large_block sent = large_block::create(prefix(), 1 << 20);
  testing::name_guard names(sent.name());
  ASSERT_EQ(sent.size(), 1u << 20);
  std::memset(sent.bytes().data(), 0x5a, sent.size());
  const block_ref ref = sent.ref();
  sent.reset();
  large_block got = large_block::adopt(ref, prefix());
  EXPECT_EQ(got.size(), 1u << 20);
  EXPECT_FALSE(testing::shm_exists(got.name()));
  for (std::size_t i = 0; i < got.size(); i += 4096) ASSERT_EQ(got.bytes()[i], std::byte{0x5a});
}

TEST_F(LargeBlockTest, ReferenceToAForeignSegmentIsCorrupt) {
  large_block other = large_block::create(testing::test_prefix() + "elsewhere.b", 100);
  testing::name_guard names(other.name());
  expect_corrupt(other.ref(), prefix());
  EXPECT_TRUE(testing::shm_exists(other.name()));  // and it was not removed
}

TEST_F(LargeBlockTest, DamagedReferencesAreCorrupt) {
  large_block b = large_block::create(prefix(), 100);
  testing::name_guard names(b.name());
  block_ref ref = b.ref();

  block_ref bad = ref;
  bad.size = 1000;  // check no longer matches
  expect_corrupt(bad, prefix());

  bad = ref;
  bad.name_length = 0;
  expect_corrupt(bad, prefix());

  bad = ref;
  bad.name_length = 500;
  expect_corrupt(bad, prefix());

  bad = ref;
  bad.name[ref.name_length - 1] = '/';
  expect_corrupt(bad, prefix());
}

TEST_F(LargeBlockTest, MissingOrShortBlocksAreCorrupt) {
  large_block b = large_block::create(prefix(), 100);
  block_ref ref = b.ref();
  b.unlink();
  expect_corrupt(ref, prefix());

  large_block small = large_block::create(prefix(), 100);
  testing::name_guard names(small.name());
  block_ref lying = small.ref();
  // A reference claiming more bytes than the segment has, with a
  // consistent check value: build it as create() would for that size.
  large_block big = large_block::create(prefix(), 1 << 20);
  block_ref big_ref = big.ref();
  big.unlink();
  std::memcpy(big_ref.name, lying.name, lying.name_length);
  expect_corrupt(big_ref, prefix());
}

TEST_F(LargeBlockTest, EmptyBlocksAreRefused) {
  try {
    large_block::create(prefix(), 0);
    FAIL() << "created an empty block";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::invalid_argument);
  }
}

}  // namespace
}  // namespace mphost::ipc
