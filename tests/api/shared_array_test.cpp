// shared_array: zero-copy hand-off to numpy in a worker and back.
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "api_test_support.hpp"

using namespace std::chrono_literals;
using mphost::value;

TEST(SharedArray, WorkerSeesTypeShapeAndContents) {
  mphost::host_pool pool(mphost_test::options(1));
  mphost::shared_array<double> a(1000);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<double>(i);
  const value d = pool.call("api_helpers:describe", a);
  EXPECT_EQ(d[0].as_string(), "d");
  EXPECT_EQ(d[1].as_int(), 1000);
  EXPECT_EQ(d[2].as_string(), "float64");
  EXPECT_EQ(d[3], value(mphost::list{1000}));
  EXPECT_DOUBLE_EQ(d[4].as_double(), 999.0 * 1000 / 2);

  mphost::shared_array<std::int32_t> b(10);
  EXPECT_EQ(pool.call("api_helpers:describe", b)[2].as_string(), "int32");
  mphost::shared_array<std::uint8_t> c(0);
  EXPECT_EQ(pool.call("api_helpers:describe", c)[1].as_int(), 0);
}

TEST(SharedArray, ShapeReachesNumpyInCOrder) {
  mphost::host_pool pool(mphost_test::options(1));
  mphost::shared_array<double> a({2, 3, 4});
  ASSERT_EQ(a.size(), 24u);
  EXPECT_EQ(a.shape(), (std::vector<std::size_t>{2, 3, 4}));
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<double>(i);
  const value d = pool.call("api_helpers:describe", a);
  EXPECT_EQ(d[1].as_int(), 2);  // len() of a memoryview: the first extent
  EXPECT_EQ(d[2].as_string(), "float64");
  EXPECT_EQ(d[3], value(mphost::list{2, 3, 4}));
  EXPECT_DOUBLE_EQ(d[4].as_double(), 23.0 * 24 / 2);
  // C order: [1, 2, 3] is item 1*12 + 2*4 + 3.
  EXPECT_DOUBLE_EQ(pool.call("api_helpers:element", a, mphost::tuple{{1, 2, 3}}).as_double(), 23.0);
  EXPECT_DOUBLE_EQ(pool.call("api_helpers:element", a, mphost::tuple{{0, 1, 0}}).as_double(), 4.0);

  mphost::shared_array<std::uint8_t> empty({0, 5});
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_EQ(pool.call("api_helpers:describe", empty)[3], value(mphost::list{0}));
  mphost::shared_array<float> one(std::vector<std::size_t>{});  // a scalar
  EXPECT_EQ(one.size(), 1u);
  EXPECT_EQ(pool.call("api_helpers:describe", one)[3], value(mphost::list{}));
  EXPECT_THROW(mphost::shared_array<double>(std::vector<std::size_t>(65, 1)), std::invalid_argument);
}

TEST(SharedArray, ShapedResultsComeBackWithTheirShape) {
  mphost::host_pool pool(mphost_test::options(1));
  const auto grid = pool.call("api_helpers:make_grid", 3, 5).as_array<double>();
  EXPECT_EQ(grid.shape(), (std::vector<std::size_t>{3, 5}));
  ASSERT_EQ(grid.size(), 15u);
  EXPECT_DOUBLE_EQ(grid[2 * 5 + 4], 204.0);
  const auto view = pool.call("api_helpers:reshaped_block", 12, 3).as_array<std::int32_t>();
  EXPECT_EQ(view.shape(), (std::vector<std::size_t>{3, 4}));
  // Passed back, it keeps its shape.
  EXPECT_EQ(pool.call("api_helpers:describe", grid)[3], value(mphost::list{3, 5}));
  EXPECT_DOUBLE_EQ(pool.call("api_helpers:element", grid, mphost::tuple{{1, 3}}).as_double(), 103.0);
}

TEST(SharedArray, WritesInTheWorkerAreSeenHere) {
  mphost::host_pool pool(mphost_test::options(1));
  mphost::shared_array<double> a(100);
  for (auto& x : a) x = 1.0;
  EXPECT_DOUBLE_EQ(pool.call("api_helpers:scale", a, 3.0).as_double(), 300.0);
  EXPECT_DOUBLE_EQ(a[57], 3.0);
}

TEST(SharedArray, SameMemoryNotACopy) {
  // The worker waits for a flag the application writes only after the call
  // was submitted: a copy taken at submit time would never show it.
  mphost::host_pool pool(mphost_test::options(1));
  mphost::shared_array<std::int64_t> a(2);
  mphost::future f = pool.submit("api_helpers:wait_for_flag", a, 10.0);
  std::this_thread::sleep_for(200ms);
  a[1] = 1234;
  __atomic_store_n(&a[0], 42, __ATOMIC_RELEASE);
  EXPECT_EQ(f.get(20s).as_int(), 1234);
}

TEST(SharedArray, OneGibibyteWithoutACopy) {
  mphost::host_pool pool(mphost_test::options(1));
  const std::size_t n = (std::size_t{1} << 30) / sizeof(double);
  mphost::shared_array<double> a(n);
  a[0] = 1.0;
  a[n - 1] = 2.0;
  const auto start = std::chrono::steady_clock::now();
  const value r = pool.call("api_helpers:touch_ends", a);
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_DOUBLE_EQ(r[0].as_double(), 1.0);
  EXPECT_DOUBLE_EQ(r[1].as_double(), 2.0);
  EXPECT_LT(r[2].as_int(), 64 * 1024) << "the worker's resident size grew by " << r[2].as_int() << " KiB";
  EXPECT_EQ(r[3].as_int(), static_cast<std::int64_t>(n));
  EXPECT_LT(took, 2s);
}

TEST(SharedArray, ResultsComeBackShared) {
  mphost::host_pool pool(mphost_test::options(1));
  const value v = pool.call("api_helpers:make_block", 1000);
  ASSERT_EQ(v.type(), value::kind::array);
  const auto a = v.as_array<double>();
  ASSERT_EQ(a.size(), 1000u);
  EXPECT_DOUBLE_EQ(a[999], 999.0);
  // The application owns it now: the name lives as long as its copies.
  const std::string name = a.block().name();
  EXPECT_TRUE(mphost_test::shm_exists(name));
  EXPECT_THROW(v.as_array<float>(), std::invalid_argument);
  const value q = pool.call("api_helpers:make_numpy", 5);
  ASSERT_EQ(q.type(), value::kind::array);
  EXPECT_EQ(q.as_array<std::int64_t>()[4], 7);
  // And it can be passed back.
  EXPECT_DOUBLE_EQ(pool.call("api_helpers:scale", v, 1.0).as_double(), 999.0 * 1000 / 2);
}

TEST(SharedArray, ResultNameGoesWithItsLastCopy) {
  mphost::host_pool pool(mphost_test::options(1));
  std::string name;
  {
    const value v = pool.call("api_helpers:make_block", 10);
    name = v.as_block().name();
    EXPECT_TRUE(mphost_test::shm_exists(name));
  }
  // The pool's own reference to the finished call goes just after the
  // future is ready.
  for (int i = 0; i < 100 && mphost_test::shm_exists(name); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(mphost_test::shm_exists(name));
}

TEST(SharedArray, NameRemovedWithTheLastCopy) {
  std::string name;
  {
    mphost::shared_array<float> a(10);
    name = a.block().name();
    EXPECT_TRUE(mphost_test::shm_exists(name));
    mphost::shared_array<float> b = a;
  }
  EXPECT_FALSE(mphost_test::shm_exists(name));
}
