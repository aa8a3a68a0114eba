// worker_process and zygote (worker_process.hpp).
#include "worker_process.hpp"

#include <dlfcn.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "mphost/ipc/resource_registry.hpp"
#include "mphost/remote_error.hpp"
#include "mphost/runtime/exit_status.hpp"
#include "mphost/runtime/launch.hpp"

namespace mphost::detail {

namespace {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

constexpr auto poll_slice = 10ms;

// A channel pair's creation: this process's end and a ticket for the other.
struct channel_end {
  ipc::channel mine;
  std::uint64_t ticket;
};

channel_end make_channel(ipc::endpoint_role mine, ipc::endpoint_role theirs) {
  ipc::channel_options options;
  options.unbounded = true;
  options.capacity = 64 * 1024;
  channel_end e{ipc::channel::create(options, mine), 0};
  e.ticket = e.mine.hand_over(theirs, std::chrono::seconds(300));
  return e;
}

pid_t start(const std::string& executable, const exec_settings& at_exec, std::vector<std::string> args) {
  args.insert(args.begin(), {"-m", "mphost._worker"});
  try {
    runtime::launch_request request{executable, std::move(args), {}};
    request.environment = at_exec.environment;
    request.working_directory = at_exec.working_directory;
    return runtime::launch(request);
  } catch (const std::exception& e) {
    throw pool_error("cannot start the mphost executable '" + executable + "': " + e.what());
  }
}

std::optional<ending> reap(pid_t pid, bool block) {
  try {
    if (auto code = runtime::wait_for_exit(pid, block)) {
      return *code < 0 ? ending{-*code, 0} : ending{0, *code};
    }
  } catch (const std::system_error&) {
    return ending{};  // not our child any more: someone reaped it
  }
  return std::nullopt;
}

// Closes both and removes their names (their other ends are dead).
void remove_channels(ipc::channel& a, ipc::channel& b, const std::vector<std::string>& names) noexcept {
  for (ipc::channel* ch : {&a, &b}) {
    if (!*ch) continue;
    ch->withdraw_hand_overs();
    ch->close();
  }
  for (const std::string& name : names) ipc::channel::remove(name);
}

// Any symbol of this library, for dladdr.
void locate_me() {}

}  // namespace

ending ending_from_wait_status(int status) noexcept {
  const int code = runtime::exit_code_from_wait_status(status);
  return code < 0 ? ending{-code, 0} : ending{0, code};
}

std::string find_executable(const std::string& configured) {
  if (!configured.empty()) return configured;
  if (const char* env = std::getenv("MPHOST_EXECUTABLE"); env != nullptr && *env != '\0') return env;
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&locate_me), &info) != 0 && info.dli_fname != nullptr) {
    std::error_code ec;
    const auto lib = std::filesystem::canonical(info.dli_fname, ec);
    if (!ec) {
      const auto candidate = lib.parent_path().parent_path() / "bin" / "mphost";
      if (access(candidate.c_str(), X_OK) == 0) return candidate.string();
    }
  }
#ifdef MPHOST_BUILD_EXECUTABLE
  if (access(MPHOST_BUILD_EXECUTABLE, X_OK) == 0) return MPHOST_BUILD_EXECUTABLE;
#endif
  return "/usr/bin/mphost";
}

void ensure_registry() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (ipc::current_registry() != nullptr) return;
    if (ipc::start_root_registry()) std::atexit([] { ipc::finish_root_registry(); });
  });
}

// ---- zygote ----

zygote::zygote(const std::string& executable, const exec_settings& at_exec, const std::vector<std::string>& preload,
               const std::string& setup) {
  auto control = make_channel(ipc::endpoint_role::writer, ipc::endpoint_role::reader);
  auto reports = make_channel(ipc::endpoint_role::reader, ipc::endpoint_role::writer);
  std::vector<std::string> args{"--zygote", control.mine.name(), std::to_string(control.ticket), reports.mine.name(),
                                std::to_string(reports.ticket), std::to_string(getpid())};
  args.insert(args.end(), preload.begin(), preload.end());
  try {
    pid_ = start(executable, at_exec, std::move(args));
    control.mine.send(std::as_bytes(std::span(setup.data(), setup.size())));
  } catch (...) {
    control.mine.withdraw_hand_overs();
    reports.mine.withdraw_hand_overs();
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      reap(pid_, true);
    }
    throw;
  }
  names_ = {control.mine.name(), reports.mine.name()};
  control_ = std::move(control.mine);
  reports_ = std::move(reports.mine);
  reader_ = std::thread([this] { read_reports(); });
}

zygote::~zygote() {
  control_.close();  // the zygote reads end of file and exits
  const auto until = clock::now() + 5s;
  while (!reap(pid_, false)) {
    if (clock::now() > until) {
      kill(pid_, SIGKILL);
      reap(pid_, true);
      break;
    }
    std::this_thread::sleep_for(poll_slice);
  }
  reports_.close();
  if (reader_.joinable()) reader_.join();
  remove_channels(control_, reports_, names_);
}

void zygote::read_reports() {
  ipc::message msg;
  for (;;) {
    ipc::wait_result r;
    try {
      r = reports_.recv(msg, ipc::deadline::after(200ms));
    } catch (const std::system_error&) {
      r = ipc::wait_result::closed;
    }
    std::lock_guard lock(m_);
    if (r == ipc::wait_result::ok) {
      const auto bytes = msg.bytes();
      std::int64_t pid = 0;
      std::int64_t status = 0;
      if (bytes.size() >= 9) std::memcpy(&pid, bytes.data() + 1, 8);
      if (bytes.size() >= 17) std::memcpy(&status, bytes.data() + 9, 8);
      if (bytes.size() >= 9 && bytes[0] == std::byte{'F'}) forked_ = static_cast<pid_t>(pid);
      if (bytes.size() >= 17 && bytes[0] == std::byte{'X'}) {
        ended_[static_cast<pid_t>(pid)] = ending_from_wait_status(static_cast<int>(status));
      }
    } else if (r == ipc::wait_result::closed) {
      gone_ = true;
    } else if (r == ipc::wait_result::timed_out && kill(pid_, 0) != 0) {
      gone_ = true;
    }
    cv_.notify_all();
    if (gone_) return;
  }
}

pid_t zygote::fork_worker(const std::vector<std::string>& channel_args) {
  // The request is the pickle of a list of four str: written by hand.
  std::string req = "\x80\x04]\x94(";
  for (const std::string& a : channel_args) {
    req += 'X';
    const auto n = static_cast<std::uint32_t>(a.size());
    req.append(reinterpret_cast<const char*>(&n), 4);
    req += a;
  }
  req += "e.";
  std::lock_guard one(fork_lock_);
  {
    std::lock_guard lock(m_);
    forked_.reset();
  }
  if (control_.send(std::as_bytes(std::span(req.data(), req.size())), ipc::deadline::after(5s)) !=
      ipc::wait_result::ok) {
    throw pool_error("the forkserver does not take requests");
  }
  std::unique_lock lock(m_);
  if (!cv_.wait_for(lock, 30s, [&] { return forked_.has_value() || gone_; }) || !forked_) {
    throw pool_error("the forkserver did not fork a worker");
  }
  return *forked_;
}

std::optional<ending> zygote::status_of(pid_t pid) {
  std::lock_guard lock(m_);
  const auto it = ended_.find(pid);
  if (it == ended_.end()) {
    if (gone_) return ending{};  // its parent is gone: it was killed with it
    return std::nullopt;
  }
  return it->second;
}

std::optional<ending> zygote::wait_status(pid_t pid, std::chrono::milliseconds limit) {
  std::unique_lock lock(m_);
  cv_.wait_for(lock, limit, [&] { return ended_.count(pid) != 0 || gone_; });
  const auto it = ended_.find(pid);
  if (it == ended_.end()) return std::nullopt;
  ending e = it->second;
  ended_.erase(it);
  return e;
}

// ---- worker_process ----

worker_process::worker_process(const std::string& executable, const exec_settings& at_exec, zygote* via)
    : via_(via) {
  auto requests = make_channel(ipc::endpoint_role::writer, ipc::endpoint_role::reader);
  auto replies = make_channel(ipc::endpoint_role::reader, ipc::endpoint_role::writer);
  std::vector<std::string> args{requests.mine.name(), std::to_string(requests.ticket), replies.mine.name(),
                                std::to_string(replies.ticket)};
  try {
    if (via_ != nullptr) {
      pid_ = via_->fork_worker(args);
    } else {
      args.push_back(std::to_string(getpid()));  // the owner it ends with
      pid_ = start(executable, at_exec, std::move(args));
    }
  } catch (...) {
    // Nobody will take the places the tickets hold: give them up, so the
    // channels' names go with this process's endpoints.
    requests.mine.withdraw_hand_overs();
    replies.mine.withdraw_hand_overs();
    throw;
  }
  names_ = {requests.mine.name(), replies.mine.name()};
  requests_ = std::move(requests.mine);
  replies_ = std::move(replies.mine);
  replies_.prompt_peer(true);  // a reply mostly answers the request just sent
}

worker_process::~worker_process() {
  if (!ending_) stop(clock::now());
  // The process is gone (reaped, or its zygote reported it): nobody else
  // uses the channels; a killed worker's endpoints would otherwise keep
  // their names.
  remove_channels(requests_, replies_, names_);
}

std::optional<ending> worker_process::ended() {
  if (ending_) return ending_;
  if (via_ != nullptr) {
    // The zygote's report may lag; a pid that no longer exists has ended.
    ending_ = via_->status_of(pid_);
    if (!ending_ && kill(pid_, 0) != 0 && errno == ESRCH) ending_ = via_->wait_status(pid_, 1s).value_or(ending{});
  } else {
    ending_ = reap(pid_, false);
  }
  return ending_;
}

ending worker_process::bury() {
  if (!ending_) {
    if (via_ != nullptr) {
      ending_ = via_->wait_status(pid_, 2s);
      if (!ending_) {
        kill(pid_, SIGKILL);
        ending_ = via_->wait_status(pid_, 2s).value_or(ending{SIGKILL, 0});
      }
    } else {
      ending_ = reap(pid_, false);
      if (!ending_) {
        // The channel said it is gone; give it a moment to be a zombie.
        for (int i = 0; i < 200 && !ending_; ++i) {
          std::this_thread::sleep_for(poll_slice);
          ending_ = reap(pid_, false);
        }
        if (!ending_) {
          kill(pid_, SIGKILL);
          ending_ = reap(pid_, true);
        }
      }
    }
  }
  remove_leftovers();
  return *ending_;
}

void worker_process::stop(clock::time_point until) {
  if (ending_) return;
  try {
    requests_.send({}, ipc::deadline::immediate());
  } catch (const std::system_error&) {
  }
  requests_.close();
  while (!ended()) {
    if (clock::now() >= until) {
      kill(pid_, SIGKILL);
      if (via_ == nullptr) {
        ending_ = reap(pid_, true);
      } else {
        ending_ = via_->wait_status(pid_, 2s).value_or(ending{SIGKILL, 0});
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  remove_leftovers();
}

void worker_process::remove_leftovers() noexcept {
  // Blocks the worker made (mphost._shared) and never handed over.
  const std::string prefix = "mphost-arr-" + std::to_string(pid_) + "-";
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.compare(0, prefix.size(), prefix) == 0) std::filesystem::remove(entry.path(), ec);
  }
}

}  // namespace mphost::detail
