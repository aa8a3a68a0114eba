#include "mphost/ipc/error.hpp"

#include <gtest/gtest.h>

#include <cerrno>

namespace mphost {
namespace {

TEST(ErrorTest, CodesBelongToTheMphostCategory) {
  const std::error_code code = errc::peer_closed;
  EXPECT_EQ(&code.category(), &mphost_category());
  EXPECT_STREQ(code.category().name(), "mphost");
  EXPECT_EQ(code.message(), "the peer has closed its end");
}

TEST(ErrorTest, ThrowErrnoCarriesTheSystemCategory) {
  try {
    throw_errno(ENOENT, "open");
    FAIL() << "throw_errno returned";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ENOENT);
    EXPECT_EQ(&e.code().category(), &std::system_category());
  }
}

}  // namespace
}  // namespace mphost
