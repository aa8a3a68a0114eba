// mphost::value: the codec on its own (bytes as CPython's pickle writes
// them) and round trips of every kind through a worker.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "api_test_support.hpp"

using mphost::value;

namespace {

std::string hex(const std::string& s) {
  static const char* digits = "0123456789abcdef";
  std::string h;
  for (unsigned char c : s) {
    h.push_back(digits[c >> 4]);
    h.push_back(digits[c & 15]);
  }
  return h;
}

value sample() {
  return mphost::dict{
      {"none", nullptr},
      {"yes", true},
      {"int", std::int64_t{-5}},
      {"big", std::numeric_limits<std::int64_t>::max()},
      {"small", std::numeric_limits<std::int64_t>::min()},
      {"pi", 3.25},
      {"text", "h\xc3\xa9llo"},
      {"raw", mphost::bytes{std::string("\0\1\2", 3)}},
      {"list", mphost::list{1, 2.5, "x", mphost::list{}, mphost::tuple{}}},
      {"tuple", mphost::tuple{1, mphost::tuple{2, 3}, mphost::dict{{"k", "v"}}, 4, 5}},
  };
}

}  // namespace

TEST(ValueCodec, WritesWhatPickleDumpsWrites) {
  // pickle.dumps(x, 4) of the same objects, recorded from CPython 3.11;
  // containers differ only by the memo (a value is a tree: no MEMOIZE).
  EXPECT_EQ(hex(mphost::to_pickle(value(5))), "80044b052e");
  EXPECT_EQ(hex(mphost::to_pickle(value(nullptr))), "80044e2e");
  EXPECT_EQ(hex(mphost::to_pickle(value(-2147483649LL))), "80049508000000000000008a05ffffff7fff2e");
  EXPECT_EQ(hex(mphost::to_pickle(value(1.5))), "8004950a00000000000000473ff80000000000002e");
  EXPECT_EQ(hex(mphost::to_pickle(value(mphost::tuple{1, 2, 3, 4}))), "8004950b00000000000000284b014b024b034b04742e");
}

TEST(ValueCodec, RoundTripsLocally) {
  const value v = sample();
  EXPECT_EQ(mphost::from_pickle(mphost::to_pickle(v)), v);
  EXPECT_EQ(mphost::from_pickle(mphost::to_pickle(value(mphost::list(2500, value(1.5))))).size(), 2500u);
}

TEST(ValueCodec, AccessorsNameTheKinds) {
  const value v = sample();
  EXPECT_EQ(v["int"].as_int(), -5);
  EXPECT_DOUBLE_EQ(v["int"].as_double(), -5.0);
  EXPECT_EQ(v["list"][2].as_string(), "x");
  try {
    (void)v["text"].as_int();
    FAIL();
  } catch (const mphost::conversion_error& e) {
    EXPECT_STREQ(e.what(), "mphost::value: expected int, got str");
  }
}

TEST(ValueRoundTrip, EveryKindThroughAWorker) {
  mphost::host_pool pool(mphost_test::options(1));
  const value v = sample();
  EXPECT_EQ(pool.call("api_helpers:echo", v), v);
  EXPECT_EQ(pool.call("api_helpers:type_name", mphost::tuple{1}).as_string(), "tuple");
  EXPECT_EQ(pool.call("api_helpers:type_name", mphost::bytes{"a"}).as_string(), "bytes");
  EXPECT_EQ(pool.call("api_helpers:type_name", mphost::dict{}).as_string(), "dict");
  EXPECT_EQ(pool.call("api_helpers:add", std::int64_t{1} << 40, 2).as_int(), (std::int64_t{1} << 40) + 2);
  const double nan = pool.call("api_helpers:echo", std::nan("")).as_double();
  EXPECT_TRUE(std::isnan(nan));
}

TEST(ValueRoundTrip, NestedAndLarge) {
  mphost::host_pool pool(mphost_test::options(1));
  value deep = mphost::list{};
  for (int i = 0; i < 50; ++i) deep = mphost::list{deep, i};
  EXPECT_EQ(pool.call("api_helpers:echo", deep), deep);
  mphost::list many;
  for (int i = 0; i < 100000; ++i) many.push_back(i % 3 == 0 ? value(i) : value(std::to_string(i)));
  EXPECT_EQ(pool.call("api_helpers:echo", many), value(many));
  const std::string big(8 << 20, 'z');
  EXPECT_EQ(pool.call("api_helpers:echo", mphost::bytes{big}).as_bytes(), big);
  EXPECT_EQ(pool.call("api_helpers:echo", big).as_string(), big);
}

TEST(ValueRoundTrip, OtherObjectsTravelOpaque) {
  mphost::host_pool pool(mphost_test::options(1));
  const value s = pool.call("api_helpers:a_set");
  ASSERT_EQ(s.type(), value::kind::pickled);
  // Handed back unchanged, it is the set again in the worker.
  EXPECT_EQ(pool.call("api_helpers:type_name", s).as_string(), "set");
  EXPECT_EQ(pool.call("api_helpers:int_keys").type(), value::kind::pickled);
}

TEST(ValueRoundTrip, IntBeyondInt64IsAnError) {
  mphost::host_pool pool(mphost_test::options(1));
  try {
    pool.call("api_helpers:big_int");
    FAIL();
  } catch (const mphost::conversion_error& e) {
    EXPECT_STREQ(e.what(), "Python int too large to convert to int64");
  }
}

TEST(ValueRoundTrip, NumpyScalarsArrivePlain) {
  mphost::host_pool pool(mphost_test::options(1));
  EXPECT_EQ(pool.call("api_helpers:numpy_scalars"), value(mphost::list{1.5, -3, true, 0.25}));
  mphost::shared_array<double> a(4);
  for (std::size_t i = 0; i < 4; ++i) a[i] = static_cast<double>(i);
  EXPECT_DOUBLE_EQ(pool.call("numpy:sum", a).as_double(), 6.0);
}
