#pragma once
// host_pool: a pool of mphost worker processes that run Python callables for
// a C++ application. The application links no libpython and holds no
// interpreter: each worker is the mphost executable running the worker loop
// of the `mphost` Python package, and talks with the pool over mphost
// channels (shared memory).
//
//   mphost::host_pool pool({.workers = 4, .python_path = {"/opt/app/py"}});
//   mphost::future f = pool.submit("numpy:dot", a, b);   // "module:qualname"
//   mphost::value r = f.get(std::chrono::seconds(5));
//   mphost::value s = pool.call("math:fsum", mphost::list{0.1, 0.2});
//   std::vector<mphost::value> m = pool.map("math:sqrt", inputs, 64);
//
// Start methods. `spawn` starts every worker as a fresh mphost process.
// `forkserver` starts one mphost zygote that imports the preload modules
// once, and forks the workers from it. The application process itself is
// never forked.
//
// Workers. Each worker applies the pool's environment overrides, working
// directory and Python path entries, imports and runs the initializer
// ("pkg.mod:func", no arguments) and then runs calls one at a time, in the
// order the pool hands them over. A worker that dies (a signal, os._exit, a
// crash in native code) fails the call it was running with worker_lost and
// is replaced; calls queued behind it go to other workers.
//
// Futures. submit() returns at once; the future is ready when the call
// returned (get() gives its value), raised (remote_error), was cancelled
// (cancelled_error) or lost its worker (worker_lost). get(timeout) throws
// timeout_error if it is not ready in time. cancel() succeeds only for a
// call no worker has taken yet.
//
// Thread-safety: every member function may be called from any number of
// threads at once. Futures may be waited on from any thread; a future may
// outlive its pool (it is then ready: the pool finishes or cancels every
// call before its destructor returns).
//
// Shutdown (destructor or shutdown()): new calls are refused (pool_error);
// calls already taken by workers run to completion for up to
// `shutdown_timeout`; calls not taken are cancelled; then every worker is
// asked to exit, and those still running after the bound are killed. No
// names are left in /dev/shm.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mphost/remote_error.hpp"
#include "mphost/shared_array.hpp"
#include "mphost/value.hpp"

namespace mphost {

enum class start_method { spawn, forkserver };

struct pool_options {
  // Number of worker processes; 0 means the number of CPUs.
  std::size_t workers = 0;
  start_method method = start_method::spawn;
  // Prepended to the workers' sys.path, in order.
  std::vector<std::string> python_path;
  // Set in the workers' os.environ before anything of the application is
  // imported (and so inherited by their children).
  std::map<std::string, std::string> environment;
  // The workers' working directory (empty: the application's).
  std::string working_directory;
  // "pkg.mod:func" run once in each worker before its first call.
  std::string initializer;
  // Modules the forkserver zygote imports before forking workers.
  std::vector<std::string> preload;
  // The mphost executable; empty: $MPHOST_EXECUTABLE, else the one installed
  // beside this library (../bin/mphost), else the build tree's.
  std::string executable;
  // How long the destructor lets running calls finish before it kills.
  std::chrono::milliseconds shutdown_timeout{5000};
  // How many calls the pool hands one worker ahead of its replies (four
  // times as many while the queue holds enough to keep every worker busy
  // that long). A call handed to a worker can no longer be cancelled.
  std::size_t pipeline_depth = 2;
};

namespace detail {
struct call_state;
struct pool_state;
}  // namespace detail

class future {
 public:
  future() noexcept = default;
  bool valid() const noexcept { return static_cast<bool>(state_); }
  // Blocks until ready; then returns the value or throws the call's error.
  value get() const;
  // The same, waiting at most `timeout` (timeout_error after it).
  value get(std::chrono::milliseconds timeout) const;
  // Whether it became ready within `timeout`.
  bool wait_for(std::chrono::milliseconds timeout) const;
  bool ready() const;
  // Cancels a call no worker has taken; true if it did.
  bool cancel();

 private:
  friend class host_pool;
  explicit future(std::shared_ptr<detail::call_state> s) noexcept : state_(std::move(s)) {}
  std::shared_ptr<detail::call_state> state_;
};

class host_pool {
 public:
  // Starts the workers and waits until each has run its initializer.
  // Throws pool_error when a worker cannot be started or its initializer
  // fails (with the initializer's remote_error text).
  explicit host_pool(pool_options options = {});
  ~host_pool();
  host_pool(const host_pool&) = delete;
  host_pool& operator=(const host_pool&) = delete;

  // Calls `target` ("module:qualname") with `args` in a worker.
  future submit_args(const std::string& target, std::vector<value> args);
  template <class... A>
  future submit(const std::string& target, A&&... args) {
    return submit_args(target, std::vector<value>{value(std::forward<A>(args))...});
  }
  // submit() and get().
  template <class... A>
  value call(const std::string& target, A&&... args) {
    return submit(target, std::forward<A>(args)...).get();
  }
  // target(item) for each item, `chunk_size` items per request; results in
  // order. The first error is thrown after every chunk is done.
  std::vector<value> map(const std::string& target, const std::vector<value>& items, std::size_t chunk_size = 1);

  std::size_t size() const noexcept;
  // Process ids of the current workers.
  std::vector<pid_t> worker_pids() const;
  // How many workers were replaced after dying.
  std::uint64_t workers_replaced() const noexcept;
  // Shuts down now (see Shutdown above); the destructor then does nothing.
  void shutdown();

  // Diagnostics: the names in /dev/shm that this application and its
  // workers have recorded and not removed yet (channels, shared arrays of
  // the application). Empty once every pool is shut down and every
  // shared_array released.
  static std::vector<std::string> live_shared_names();

 private:
  std::shared_ptr<detail::pool_state> state_;
};

}  // namespace mphost
