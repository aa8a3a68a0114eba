// pickle_scan: finds a BYTEARRAY8 that declares more bytes than follow it,
// only where the unpickler would reach it as an opcode.
#include "mphost/runtime/pickle_scan.hpp"

#include <gtest/gtest.h>

#include <string>

namespace {

using mphost::runtime::pickle::find_overrunning_bytearray;

auto scan(const std::string& s) { return find_overrunning_bytearray(std::as_bytes(std::span(s.data(), s.size()))); }

std::string le8(std::uint64_t v) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return out;
}

TEST(PickleScan, FindsAnOverrunningBytearrayAfterOtherOpcodes) {
  // PROTO 5, FRAME 3, SHORT_BINBYTES 1 (holding a 0x96 byte), then BYTEARRAY8 of 2^40 bytes.
  const std::string data = std::string("\x80\x05\x95", 3) + le8(3) + std::string("C\x01\x96", 3) + "\x96" + le8(1ull << 40) + "ab";
  const auto found = scan(data);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->offset, 14u);
  EXPECT_EQ(found->length, 1ull << 40);
}

TEST(PickleScan, AWellFormedBytearrayIsNotReported) {
  const std::string data = std::string("\x80\x05\x96", 3) + le8(2) + "\x96\x96" + "\x94.";
  EXPECT_FALSE(scan(data).has_value());
}

TEST(PickleScan, A0x96InsideAnArgumentIsNotAnOpcode) {
  // BINBYTES of 9 bytes that look like a BYTEARRAY8 header, then STOP.
  const std::string data = std::string("B\x09\x00\x00\x00", 5) + "\x96" + le8(1ull << 50) + ".";
  EXPECT_FALSE(scan(data).has_value());
  // Protocol 0 text arguments too.
  EXPECT_FALSE(scan(std::string("S'\x96") + le8(1ull << 50) + "'\n.").has_value());
}

TEST(PickleScan, StopsWhereTheUnpicklerWouldRaiseFirst) {
  const std::string tail = "\x96" + le8(1ull << 40);
  EXPECT_FALSE(scan("." + tail).has_value());                       // STOP before it
  EXPECT_FALSE(scan("\xff" + tail).has_value());                    // not an opcode
  EXPECT_FALSE(scan(std::string("X\xff\xff\x00\x00", 5) + tail).has_value());  // truncated argument
  EXPECT_FALSE(scan("Ino newline" + tail).has_value());            // a text argument never ends
  EXPECT_FALSE(scan(std::string("\x95") + le8(1000) + tail).has_value());     // a frame past the end
  EXPECT_FALSE(scan(std::string("\x96") + le8(~0ull)).has_value());           // OverflowError, no allocation
  EXPECT_FALSE(scan(std::string("\x96\x01\x02", 3)).has_value());             // length itself cut short
  EXPECT_TRUE(scan("K\x01" + tail).has_value());
}

TEST(PickleScan, EveryTruncationOfAnyInputStaysInBounds) {
  std::string data = std::string("\x80\x05\x95", 3) + le8(40) + "cmod\nname\n\x8c\x03\x61\x62\x63" + "\x96" + le8(5) + "12345" + "\x8e" + le8(1) + "x.";
  for (std::size_t n = 0; n <= data.size(); ++n) (void)scan(data.substr(0, n));
  for (std::size_t i = 0; i < data.size(); ++i) {
    std::string mutated = data;
    mutated[i] = '\x96';
    (void)scan(mutated);
  }
  SUCCEED();
}

}  // namespace
