// host_pool (host_pool.hpp): a queue of calls, one driver thread per worker
// that hands calls to its worker (up to pipeline_depth ahead) and reads its
// replies, and the futures the submitters wait on.
//
//   submit() --encode--> pending (deque, pool mutex) --driver--> requests
//   channel --> worker (mphost._worker) --> replies channel --driver-->
//   decode --> call_state (ready) --> future::get()
//
// A call submitted while the queue is empty and some driver sleeps with
// nothing in flight skips the queue: the submitting thread sends it to that
// driver's worker itself (under the pool mutex, so that no other send to
// that worker comes between) and leaves it to the driver as `handed`; the
// driver wakes only to read the reply, while the worker already runs it.
//
// A driver that finds its worker gone (the replies channel closed, or the
// process reaped) fails the call at the head of its in-flight list with
// worker_lost, puts the others back at the front of pending (they had not
// started: the worker runs calls in order), and starts a replacement.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>
#include <thread>

#include "mphost/host_pool.hpp"
#include "mphost/ipc/resource_registry.hpp"
#include "value_codec.hpp"
#include "worker_process.hpp"

namespace mphost {

namespace detail {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

struct call_state {
  enum class phase { queued, taken, done };
  std::mutex m;
  std::condition_variable cv;
  std::atomic<bool> finished{false};  // at == done, readable without m
  phase at = phase::queued;
  std::optional<value> result;
  std::exception_ptr error;
  std::string request;  // id + pickle

  void finish(std::optional<value> v, std::exception_ptr e) {
    {
      std::lock_guard lock(m);
      at = phase::done;
      result = std::move(v);
      error = std::move(e);
      finished.store(true, std::memory_order_release);
    }
    cv.notify_all();
  }
  // queued -> taken; false if it was cancelled meanwhile.
  bool take() {
    std::lock_guard lock(m);
    if (at != phase::queued) return false;
    at = phase::taken;
    return true;
  }
};

using call_ptr = std::shared_ptr<call_state>;

struct pool_state;

struct driver {
  std::unique_ptr<worker_process> worker;
  // Under the pool mutex: the driver waits for work with nothing in flight,
  // so a submitter may send a call to its worker itself (`handed`, already
  // sent) instead of waking the driver to do it.
  bool idle = false;
  call_ptr handed;
  std::atomic<pid_t> pid{-1};  // the worker's, for worker_pids()
  std::deque<call_ptr> in_flight;
  std::thread thread;
};

struct pool_state {
  pool_options options;
  std::string executable;
  std::unique_ptr<zygote> forkserver;
  exec_settings at_exec;
  std::mutex m;
  std::condition_variable work;  // pending grew, or closing
  std::deque<call_ptr> pending;
  bool closing = false;
  clock::time_point stop_by{};
  std::uint64_t next_id = 1;
  std::atomic<std::uint64_t> replaced{0};
  std::atomic<std::size_t> alive{0};
  std::vector<std::unique_ptr<driver>> drivers;
  std::once_flag shut;

  std::string setup_pickle(bool with_initializer) const;
  std::unique_ptr<worker_process> start_worker();
  void run(driver& d);
  bool complete_one(driver& d, const ipc::message& msg);
  // The worker is gone: the call at the head of in_flight fails with
  // worker_lost if it had started; the others go back to pending.
  void lose_worker(driver& d, bool front_started);
  void fail_pending(const std::exception_ptr& e);
  void shutdown();
};

namespace {

constexpr std::size_t backlog_factor = 4;

void put_header(std::string& out, std::uint64_t id) {
  char h[8];
  std::memcpy(h, &id, 8);
  out.replace(0, 8, h, 8);
}

std::exception_ptr error_from(const value& v) {
  if (v.type() == value::kind::tuple && v.size() == 3) {
    const auto& t = v.as_tuple();
    if (t[0].type() == value::kind::string && t[1].type() == value::kind::string &&
        t[2].type() == value::kind::string) {
      return std::make_exception_ptr(remote_error(t[0].as_string(), t[1].as_string(), t[2].as_string()));
    }
  }
  return std::make_exception_ptr(pool_error("a worker sent an error the pool cannot read"));
}

// Waits for the set-up reply of a new worker (its initializer ran).
void await_setup(worker_process& w, std::chrono::seconds limit) {
  ipc::message msg;
  const auto until = clock::now() + limit;
  for (;;) {
    const ipc::wait_result r = w.replies().recv(msg, ipc::deadline::after(50ms));
    if (r == ipc::wait_result::ok) break;
    if (r == ipc::wait_result::closed || w.ended() || clock::now() > until) {
      const ending e = w.bury();
      throw pool_error("a worker process ended while starting (pid " + std::to_string(w.pid()) + ", " +
                       (e.signal != 0 ? "signal " + std::to_string(e.signal) : "exit code " + std::to_string(e.exit_code)) +
                       ")");
    }
  }
  const auto bytes = msg.bytes();
  if (bytes.size() < 9) throw pool_error("a worker sent a damaged reply");
  if (bytes[8] != std::byte{0}) {
    try {
      std::rethrow_exception(error_from(read_pickle(bytes.subspan(9))));
    } catch (const remote_error& e) {
      throw pool_error("the worker initializer failed: " + std::string(e.what()) + "\n" + e.traceback());
    }
  }
}

}  // namespace

std::string pool_state::setup_pickle(bool with_initializer) const {
  dict env;
  for (const auto& [k, v] : options.environment) env.emplace(k, v);
  list path(options.python_path.begin(), options.python_path.end());
  std::string body;
  write_pickle(value(dict{{"path", std::move(path)},
                          {"env", std::move(env)},
                          {"cwd", options.working_directory},
                          {"init", with_initializer ? options.initializer : std::string()}}),
               body);
  return body;
}

std::unique_ptr<worker_process> pool_state::start_worker() {
  auto w = std::make_unique<worker_process>(executable, at_exec, forkserver.get());
  std::string req(8, '\0');
  req += setup_pickle(true);
  w->requests().send(std::as_bytes(std::span(req.data(), req.size())));
  await_setup(*w, std::chrono::seconds(120));
  return w;
}

bool pool_state::complete_one(driver& d, const ipc::message& msg) {
  const auto bytes = msg.bytes();
  if (bytes.size() < 9 || d.in_flight.empty()) return false;
  std::uint64_t id = 0;
  std::memcpy(&id, bytes.data(), 8);
  call_ptr call = std::move(d.in_flight.front());
  d.in_flight.pop_front();
  std::uint64_t expected = 0;
  std::memcpy(&expected, call->request.data(), 8);
  if (id != expected) {
    call->finish(std::nullopt, std::make_exception_ptr(pool_error("a worker answered another call")));
    return false;
  }
  try {
    value v = read_pickle(bytes.subspan(9));
    if (bytes[8] == std::byte{0}) {
      call->finish(std::move(v), nullptr);
    } else {
      call->finish(std::nullopt, error_from(v));
    }
  } catch (...) {
    call->finish(std::nullopt, std::current_exception());
  }
  return true;
}

void pool_state::fail_pending(const std::exception_ptr& e) {
  std::deque<call_ptr> left;
  {
    std::lock_guard lock(m);
    left.swap(pending);
  }
  for (call_ptr& c : left) {
    if (c->take()) c->finish(std::nullopt, e);
  }
}

void pool_state::lose_worker(driver& d, bool front_started) {
  const ending e = d.worker->bury();
  const pid_t pid = d.worker->pid();
  if (front_started && !d.in_flight.empty()) {
    d.in_flight.front()->finish(std::nullopt, std::make_exception_ptr(worker_lost(pid, e.signal, e.exit_code)));
    d.in_flight.pop_front();
  }
  {
    // The rest had not started: back to the front of the queue.
    std::lock_guard lock(m);
    for (auto it = d.in_flight.rbegin(); it != d.in_flight.rend(); ++it) {
      {
        std::lock_guard call_lock((*it)->m);
        (*it)->at = call_state::phase::queued;
      }
      pending.push_front(std::move(*it));
    }
    d.in_flight.clear();
  }
  work.notify_all();
  d.worker.reset();
  bool closing_now;
  {
    std::lock_guard lock(m);
    closing_now = closing;
  }
  if (closing_now) return;
  try {
    d.worker = start_worker();
    d.pid = d.worker->pid();
    ++replaced;
  } catch (...) {
    d.worker.reset();
  }
}

void pool_state::run(driver& d) {
  ipc::message msg;
  std::vector<call_ptr> fresh;
  const std::size_t depth = std::max<std::size_t>(options.pipeline_depth, 1);
  // With a backlog that would keep every worker busy for long anyway, a
  // worker is handed more calls ahead, so that it does not wait for its
  // driver to be scheduled between two calls.
  const std::size_t backlog = drivers.size() * depth * backlog_factor;
  std::size_t ahead = depth;
  while (d.worker) {
    fresh.clear();
    {
      std::unique_lock lock(m);
      if (d.in_flight.empty() && !d.handed) {
        d.idle = true;
        work.wait(lock, [&] { return closing || !pending.empty() || d.handed; });
        d.idle = false;
      }
      if (d.handed) d.in_flight.push_back(std::move(d.handed));  // sent already, first in line
      if (closing && d.in_flight.empty() && pending.empty()) break;
      ahead = pending.size() >= backlog ? depth * backlog_factor : depth;
      while (!pending.empty() && d.in_flight.size() + fresh.size() < ahead) {
        call_ptr c = std::move(pending.front());
        pending.pop_front();
        if (c->take()) fresh.push_back(std::move(c));
      }
    }
    bool lost = false;
    // A worker that died while idle has started none of these calls.
    bool front_started = true;
    if (!fresh.empty() && d.in_flight.empty() && d.worker->ended()) {
      d.in_flight.assign(fresh.begin(), fresh.end());
      fresh.clear();
      lost = true;
      front_started = false;
    }
    for (call_ptr& c : fresh) {
      d.in_flight.push_back(c);
      try {
        if (d.worker->requests().send(std::as_bytes(std::span(c->request.data(), c->request.size()))) !=
            ipc::wait_result::ok) {
          lost = true;
        }
      } catch (const std::system_error&) {
        lost = true;
      }
      if (lost) {
        // Not delivered: the worker never saw it, nor anything after it.
        if (d.in_flight.size() == 1) front_started = false;
        d.in_flight.insert(d.in_flight.end(), fresh.begin() + (&c - fresh.data()) + 1, fresh.end());
        break;
      }
    }
    fresh.clear();  // in_flight holds them; a finished call must not linger here
    while (!lost && !d.in_flight.empty()) {
      ipc::wait_result r;
      try {
        r = d.worker->replies().recv(msg, ipc::deadline::after(100ms));
      } catch (const std::system_error&) {
        r = ipc::wait_result::closed;  // a damaged channel: the worker is not trusted any more
      }
      if (r == ipc::wait_result::ok) {
        complete_one(d, msg);
        // Keep the worker fed: go back for more if there is room.
        if (d.in_flight.size() < ahead) {
          std::lock_guard lock(m);
          if (!pending.empty()) break;
        }
        continue;
      }
      if (r == ipc::wait_result::closed || d.worker->ended()) {
        lost = true;
        break;
      }
      bool overdue;
      {
        std::lock_guard lock(m);
        overdue = closing && clock::now() >= stop_by;
      }
      if (overdue) {
        d.worker->stop(clock::now());
        for (call_ptr& c : d.in_flight) {
          c->finish(std::nullopt, std::make_exception_ptr(pool_error("the pool was shut down while the call ran")));
        }
        d.in_flight.clear();
        d.worker.reset();
        break;
      }
    }
    if (lost) lose_worker(d, front_started);
  }
  if (d.worker) {
    d.worker->stop(stop_by);
    d.worker.reset();
  }
  if (--alive == 0) {
    fail_pending(std::make_exception_ptr(pool_error("no worker process is left in the pool")));
  }
}

void pool_state::shutdown() {
  {
    std::lock_guard lock(m);
    closing = true;
    stop_by = clock::now() + options.shutdown_timeout;
  }
  fail_pending(std::make_exception_ptr(cancelled_error("the pool was shut down before the call started")));
  work.notify_all();
  for (auto& d : drivers) {
    if (d->thread.joinable()) d->thread.join();
  }
  drivers.clear();
  forkserver.reset();
}

}  // namespace detail

// ---- future ----

value future::get() const {
  if (!state_) throw pool_error("mphost::future: no call");
  // A tiny call's reply usually comes within microseconds: look for it a
  // little, yielding the core, before sleeping on the condition variable.
  for (int i = 0; i < 16 && !state_->finished.load(std::memory_order_acquire); ++i) std::this_thread::yield();
  std::unique_lock lock(state_->m);
  state_->cv.wait(lock, [&] { return state_->at == detail::call_state::phase::done; });
  if (state_->error) std::rethrow_exception(state_->error);
  return *state_->result;
}

value future::get(std::chrono::milliseconds timeout) const {
  if (!wait_for(timeout)) throw timeout_error("the call did not finish within the timeout");
  return get();
}

bool future::wait_for(std::chrono::milliseconds timeout) const {
  if (!state_) return false;
  std::unique_lock lock(state_->m);
  return state_->cv.wait_for(lock, timeout, [&] { return state_->at == detail::call_state::phase::done; });
}

bool future::ready() const { return wait_for(std::chrono::milliseconds(0)); }

bool future::cancel() {
  if (!state_) return false;
  {
    std::lock_guard lock(state_->m);
    if (state_->at != detail::call_state::phase::queued) return false;
    state_->at = detail::call_state::phase::done;
    state_->error = std::make_exception_ptr(cancelled_error("the call was cancelled"));
    state_->finished.store(true, std::memory_order_release);
  }
  state_->cv.notify_all();
  return true;
}

// ---- host_pool ----

host_pool::host_pool(pool_options options) : state_(std::make_shared<detail::pool_state>()) {
  auto& s = *state_;
  s.options = std::move(options);
  if (s.options.workers == 0) s.options.workers = std::max(1u, std::thread::hardware_concurrency());
  s.executable = detail::find_executable(s.options.executable);
  detail::ensure_registry();
  if (!s.options.working_directory.empty()) {
    // Absolute, so that the worker's own chdir to it (set-up) lands there too.
    s.options.working_directory = std::filesystem::absolute(s.options.working_directory).lexically_normal().string();
  }
  s.at_exec.environment.assign(s.options.environment.begin(), s.options.environment.end());
  s.at_exec.working_directory = s.options.working_directory;
  if (s.options.method == start_method::forkserver) {
    s.forkserver =
        std::make_unique<detail::zygote>(s.executable, s.at_exec, s.options.preload, s.setup_pickle(false));
  }
  try {
    for (std::size_t i = 0; i < s.options.workers; ++i) {
      auto d = std::make_unique<detail::driver>();
      d->worker = s.start_worker();
      d->pid = d->worker->pid();
      s.drivers.push_back(std::move(d));
    }
  } catch (...) {
    s.drivers.clear();
    s.forkserver.reset();
    throw;
  }
  s.alive = s.drivers.size();
  for (auto& d : s.drivers) {
    detail::driver* raw = d.get();
    d->thread = std::thread([&s, raw] { s.run(*raw); });
  }
}

host_pool::~host_pool() { shutdown(); }

void host_pool::shutdown() {
  std::call_once(state_->shut, [this] { state_->shutdown(); });
}

future host_pool::submit_args(const std::string& target, std::vector<value> args) {
  auto call = std::make_shared<detail::call_state>();
  std::string body;
  write_call(target, args, body);
  call->request.reserve(8 + body.size());
  call->request.assign(8, '\0');
  call->request += body;
  detail::driver* direct = nullptr;
  {
    std::lock_guard lock(state_->m);
    if (state_->closing) throw pool_error("the pool is shut down");
    if (state_->alive == 0) throw pool_error("no worker process is left in the pool");
    detail::put_header(call->request, state_->next_id++);
    // An idle worker takes the call straight from this thread: the driver
    // is woken only to read the reply, while the worker already runs it.
    if (state_->pending.empty()) {
      for (auto& d : state_->drivers) {
        // (Its driver sleeps: this thread may use its worker meanwhile. One
        // that died idle is left to its driver, which requeues the call.)
        if (!d->idle || d->handed || !d->worker || d->worker->ended()) continue;
        ipc::wait_result sent = ipc::wait_result::closed;
        try {
          sent = d->worker->requests().send(std::as_bytes(std::span(call->request.data(), call->request.size())),
                                            ipc::deadline::immediate());
        } catch (const std::system_error&) {
        }
        if (sent != ipc::wait_result::ok) continue;  // its driver will find out; try the next
        call->at = detail::call_state::phase::taken;
        d->handed = call;
        direct = d.get();
        break;
      }
    }
    if (direct == nullptr) state_->pending.push_back(call);
  }
  if (direct != nullptr) {
    state_->work.notify_all();  // the one idle driver among the waiters must see it
  } else {
    state_->work.notify_one();
  }
  return future(std::move(call));
}

std::vector<value> host_pool::map(const std::string& target, const std::vector<value>& items, std::size_t chunk_size) {
  chunk_size = std::max<std::size_t>(chunk_size, 1);
  std::vector<future> parts;
  for (std::size_t at = 0; at < items.size(); at += chunk_size) {
    const std::size_t end = std::min(items.size(), at + chunk_size);
    if (chunk_size == 1) {
      parts.push_back(submit(target, items[at]));
    } else {
      parts.push_back(submit("mphost._worker:run_chunk", target, list(items.begin() + at, items.begin() + end)));
    }
  }
  std::vector<value> out;
  out.reserve(items.size());
  std::exception_ptr first;
  for (future& f : parts) {
    try {
      value v = f.get();
      if (chunk_size == 1) {
        out.push_back(std::move(v));
      } else {
        for (const value& x : v.as_list()) out.push_back(x);
      }
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  }
  if (first) std::rethrow_exception(first);
  return out;
}

std::size_t host_pool::size() const noexcept { return state_->options.workers; }

std::vector<pid_t> host_pool::worker_pids() const {
  std::vector<pid_t> pids;
  // Drivers replace workers on their own threads; the pids are a snapshot.
  for (const auto& d : state_->drivers) pids.push_back(d->pid.load());
  return pids;
}

std::vector<std::string> host_pool::live_shared_names() {
  ipc::resource_registry* registry = ipc::current_registry();
  return registry != nullptr ? registry->names() : std::vector<std::string>{};
}

std::uint64_t host_pool::workers_replaced() const noexcept { return state_->replaced.load(); }

}  // namespace mphost
