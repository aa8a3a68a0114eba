// The mphost column of bench_cpp_pool.py: the same work as its stock column
// (concurrent.futures.ProcessPoolExecutor driven from Python), done through
// mphost::host_pool from a C++ program with no Python in it. Prints the one
// JSON result line of the harness (tools/bench/scenarios/_benchlib.py).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "mphost/mphost.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

struct args {
  std::string mode = "roundtrip";
  long calls = 1000;
  long mb = 1;
  std::size_t workers = 2;
  std::string py;
  std::string executable;
};

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int wrong(const char* what) {
  std::fprintf(stderr, "bench-wrong-result: %s\n", what);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--mode") a.mode = v;
    else if (k == "--calls") a.calls = std::atol(v);
    else if (k == "--mb") a.mb = std::atol(v);
    else if (k == "--workers") a.workers = static_cast<std::size_t>(std::atol(v));
    else if (k == "--py") a.py = v;
    else if (k == "--executable") a.executable = v;
  }
  try {
    mphost::pool_options o;
    o.workers = a.workers;
    o.python_path = {a.py};
    o.executable = a.executable;
    mphost::host_pool pool(o);
    if (pool.call("_cpp_pool_work:double", 21).as_int() != 42) return wrong("warm-up");

    if (a.mode == "roundtrip") {
      std::vector<double> times;
      for (long i = 0; i < a.calls; ++i) {
        const auto t0 = clock_type::now();
        const auto r = pool.call("_cpp_pool_work:double", i).as_int();
        times.push_back(seconds_since(t0));
        if (r != 2 * i) return wrong("wrong result");
      }
      std::printf("{\"calls\": %ld, \"higher_is_better\": false, \"metric\": \"roundtrip_us\", \"unit\": \"\\u00b5s\", \"value\": %.6g}\n",
                  a.calls, median(times) * 1e6);
    } else if (a.mode == "threads") {
      const long per = a.calls / 4;
      std::atomic<long> bad{0};
      std::vector<std::thread> threads;
      const auto t0 = clock_type::now();
      for (long t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
          std::vector<mphost::future> window;
          for (long start = 0; start < per; start += 64) {
            window.clear();
            const long end = std::min(per, start + 64);
            for (long i = start; i < end; ++i) window.push_back(pool.submit("_cpp_pool_work:double", t * per + i));
            for (long i = start; i < end; ++i) {
              if (window[static_cast<std::size_t>(i - start)].get().as_int() != 2 * (t * per + i)) ++bad;
            }
          }
        });
      }
      for (auto& th : threads) th.join();
      const double elapsed = seconds_since(t0);
      if (bad != 0) return wrong("wrong results");
      std::printf("{\"calls\": %ld, \"higher_is_better\": true, \"metric\": \"calls_per_s\", \"threads\": 4, \"unit\": \"calls/s\", \"value\": %.6g}\n",
                  4 * per, 4 * per / elapsed);
    } else {
      const std::size_t count = static_cast<std::size_t>(a.mb) * 1000 * 1000 / 8;
      mphost::shared_array<double> arr(count);
      std::fill(arr.begin(), arr.end(), 1.0);
      arr[count - 1] = 2.0;
      std::vector<double> times;
      for (long i = 0; i < a.calls; ++i) {
        const auto t0 = clock_type::now();
        const double r = pool.call("_cpp_pool_work:ends", arr).as_double();
        times.push_back(seconds_since(t0));
        if (r != 3.0) return wrong("wrong result");
      }
      std::printf("{\"higher_is_better\": false, \"mb\": %ld, \"metric\": \"handoff_ms\", \"unit\": \"ms\", \"value\": %.6g}\n",
                  a.mb, median(times) * 1e3);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench-error: %s\n", e.what());
    return 1;
  }
  return 0;
}
