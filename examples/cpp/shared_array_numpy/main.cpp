// Hands a shared_array<double> of 10^7 elements to numpy in a pool of
// mphost workers and prints what numpy computed. The application links
// mphost::mphost only: no libpython, no interpreter in this process.
#include <cstdio>
#include <exception>

#include "mphost/mphost.hpp"

int main() {
  try {
    mphost::pool_options options;
    options.workers = 2;
    options.python_path = {EXAMPLE_PY_DIR};
    mphost::host_pool pool(options);

    constexpr std::size_t n = 10'000'000;
    mphost::shared_array<double> data(n);
    for (std::size_t i = 0; i < n; ++i) data[i] = static_cast<double>(i % 1000) / 1000.0;

    // A numpy function straight from the library, and one of the example's.
    const double total = pool.call("numpy:sum", data).as_double();
    const mphost::value s = pool.call("array_stats:summary", data);
    std::printf("numpy.sum: %.1f\n", total);
    std::printf("summary: dtype=%s shape=(%lld,) mean=%.6f std=%.6f\n", s["dtype"].as_string().c_str(),
                static_cast<long long>(s["shape"][0].as_int()), s["mean"].as_double(), s["std"].as_double());

    // The worker writes into the same memory.
    pool.call("array_stats:normalize", data);
    double norm2 = 0;
    for (double x : data) norm2 += x * x;
    std::printf("after normalize in the worker: |data|^2 = %.6f\n", norm2);
    return 0;
  } catch (const mphost::remote_error& e) {
    std::fprintf(stderr, "Python error: %s\n%s", e.what(), e.traceback().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
  }
  return 1;
}
