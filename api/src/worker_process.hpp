#pragma once
// Private: one worker process of a host_pool and its two channels, started
// by spawn (a fresh mphost process) or by the pool's forkserver zygote.
//
// A worker_process owns its channels (requests: this process writes;
// replies: this process reads) and knows how to tell whether its process
// ended and how (pid, signal, exit code). For spawn the pool's process is
// the parent and reaps it; for forkserver the zygote reaps it and reports
// the status, which zygote::status_of() hands over.
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "mphost/ipc/channel.hpp"

namespace mphost::detail {

// What a started process gets at exec (pool_options::environment and
// working_directory, an absolute path or empty).
struct exec_settings {
  std::vector<std::pair<std::string, std::string>> environment;
  std::string working_directory;
};

// How a process ended: signal (0 if it exited) and exit code.
struct ending {
  int signal = 0;
  int exit_code = 0;
};
ending ending_from_wait_status(int status) noexcept;

// The forkserver: an mphost process that imports the preload modules once
// and forks workers on request.
class zygote {
 public:
  // `setup` is the pickle the workers' set-up request carries (path,
  // environment, working directory), applied before the preload imports.
  zygote(const std::string& executable, const exec_settings& at_exec, const std::vector<std::string>& preload,
         const std::string& setup);
  ~zygote();
  zygote(const zygote&) = delete;
  zygote& operator=(const zygote&) = delete;

  // Asks for a worker serving the given channels (names and tickets);
  // returns its pid. Throws pool_error if the zygote is gone.
  pid_t fork_worker(const std::vector<std::string>& channel_args);
  // How `pid` ended, once the zygote reported it.
  std::optional<ending> status_of(pid_t pid);
  // Waits up to `limit` for that report.
  std::optional<ending> wait_status(pid_t pid, std::chrono::milliseconds limit);

 private:
  void read_reports();

  pid_t pid_ = -1;
  ipc::channel control_;
  ipc::channel reports_;
  std::vector<std::string> names_;
  std::mutex fork_lock_;  // one fork request at a time
  std::mutex m_;
  std::condition_variable cv_;
  std::optional<pid_t> forked_;
  std::map<pid_t, ending> ended_;
  bool gone_ = false;
  std::thread reader_;
};

class worker_process {
 public:
  // Starts the process; the set-up request is the caller's to send.
  worker_process(const std::string& executable, const exec_settings& at_exec, zygote* via);
  ~worker_process();
  worker_process(const worker_process&) = delete;
  worker_process& operator=(const worker_process&) = delete;

  pid_t pid() const noexcept { return pid_; }
  ipc::channel& requests() noexcept { return requests_; }
  ipc::channel& replies() noexcept { return replies_; }
  // How it ended, if it has (non-blocking).
  std::optional<ending> ended();
  // Asks it to exit (an empty request), waits until `until`, then kills it;
  // reaps it and removes the shared blocks it left.
  void stop(std::chrono::steady_clock::time_point until);
  // After a death: its status (waiting briefly for the zygote's report) and
  // the removal of what it left in /dev/shm.
  ending bury();

 private:
  void remove_leftovers() noexcept;

  zygote* via_;
  pid_t pid_ = -1;
  ipc::channel requests_;
  ipc::channel replies_;
  std::vector<std::string> names_;
  std::optional<ending> ending_;
};

// The mphost executable the pool starts (see pool_options::executable).
std::string find_executable(const std::string& configured);
// Makes sure the application has a resource registry that the workers join
// (so that what a killed worker created is removed when the application
// ends).
void ensure_registry();

}  // namespace mphost::detail
