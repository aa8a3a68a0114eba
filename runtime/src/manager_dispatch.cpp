// manager_dispatch: a manager's channel links served by native threads
// (contract in the header).
#include "mphost/runtime/manager_dispatch.hpp"

#include <pthread.h>
#include <signal.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "mphost/ipc/channel.hpp"
#include "mphost/ipc/error.hpp"

namespace mphost::runtime {

namespace {

void put_u16(std::string& out, std::size_t value) {
  out.push_back(static_cast<char>(value & 0xff));
  out.push_back(static_cast<char>((value >> 8) & 0xff));
}

std::size_t get_u16(const std::byte* at) noexcept {
  return std::to_integer<std::size_t>(at[0]) | (std::to_integer<std::size_t>(at[1]) << 8);
}

std::string_view text_at(const std::byte* at, std::size_t size) noexcept {
  return {reinterpret_cast<const char*>(at), size};
}

}  // namespace

void encode_request_head(std::uint8_t flags, std::string_view ident, std::string_view method, std::string& out) {
  if (ident.size() > 0xffff || method.size() > 0xffff) {
    throw std::system_error(make_error_code(errc::message_too_large), "manager request name too long");
  }
  out.push_back(static_cast<char>(flags));
  put_u16(out, ident.size());
  put_u16(out, method.size());
  out.append(ident);
  out.append(method);
}

bool decode_request(std::span<const std::byte> frame, manager_request& out) noexcept {
  if (frame.size() < request_head_size) return false;
  const std::byte* at = frame.data();
  const std::size_t ident_size = get_u16(at + 1);
  const std::size_t method_size = get_u16(at + 3);
  const std::size_t names_end = request_head_size + ident_size + method_size;
  if (names_end > frame.size()) return false;
  out.flags = std::to_integer<std::uint8_t>(at[0]);
  out.ident = text_at(at + request_head_size, ident_size);
  out.method = text_at(at + request_head_size + ident_size, method_size);
  out.arguments = frame.subspan(names_end);
  return true;
}

// One link: its two channels and whether its thread has ended.
struct link_state {
  ipc::channel requests;  // reader
  ipc::channel replies;   // writer
  bool ended = false;     // under shared::lock
};

struct manager_dispatch::shared {
  explicit shared(std::shared_ptr<manager_host> h) : host(std::move(h)) {}

  std::shared_ptr<manager_host> host;
  std::mutex lock;
  std::condition_variable link_ended;
  std::vector<std::shared_ptr<link_state>> links;
  std::size_t running = 0;
  bool stopped = false;

  void forget_ended() {
    std::erase_if(links, [](const std::shared_ptr<link_state>& l) { return l->ended; });
  }
  // Throws system_error ECANCELED once stopped.
  void check_open();
  // Counts a new link in (system_error ECANCELED once stopped).
  void enlist(const std::shared_ptr<link_state>& link);
  // Makes a link and counts it in; its channels are gone again if stop()
  // came first.
  std::shared_ptr<link_state> make_enlisted(link_offer& offer);
  // Closes an ended link's channels and counts it out.
  void finish(link_state& link) noexcept;
};

namespace {

// Serves one link until end of file, a failed send, or stop().
void serve_link(manager_host& host, link_state& link) {
  ipc::message request;
  std::string reply;
  manager_request call;
  for (;;) {
    ipc::wait_result got = link.requests.recv(request);
    if (got == ipc::wait_result::interrupted || got == ipc::wait_result::timed_out) continue;
    if (got != ipc::wait_result::ok) return;  // closed: the client went away
    reply.clear();
    const auto frame = request.bytes();
    if (decode_request(frame, call)) {
      host.answer(call, reply);
    } else {
      host.bad_request(frame, reply);
    }
    ipc::wait_result sent;
    do {
      sent = link.replies.send(std::as_bytes(std::span(reply.data(), reply.size())));
    } while (sent == ipc::wait_result::interrupted);
    if (sent != ipc::wait_result::ok) return;  // no reader left
  }
}

void link_thread(std::shared_ptr<manager_dispatch::shared> all, std::shared_ptr<link_state> link) {
  // Signals are for the process's main thread (Python runs handlers there).
  sigset_t every;
  sigfillset(&every);
  pthread_sigmask(SIG_BLOCK, &every, nullptr);
  manager_host& host = *all->host;
  bool started = false;
  try {
    host.thread_started();
    started = true;
    serve_link(host, *link);
  } catch (const std::exception&) {
    // The link ends; the client sees end of file.
  }
  all->finish(*link);
  // Last: it may end the thread without returning (see manager_host).
  if (started) {
    try {
      host.thread_ending();
    } catch (const std::exception&) {
    }
  }
}

}  // namespace

manager_dispatch::manager_dispatch(std::shared_ptr<manager_host> host)
    : shared_(std::make_shared<shared>(std::move(host))) {}

manager_dispatch::~manager_dispatch() { stop(std::chrono::milliseconds(0)); }

namespace {

// Makes a link's channels and what the client needs to open its ends.
std::shared_ptr<link_state> make_link(link_offer& offer) {
  auto link = std::make_shared<link_state>();
  ipc::channel_options options;
  options.unbounded = true;
  link->requests = ipc::channel::create(options, ipc::endpoint_role::reader);
  link->requests.prompt_peer(true);
  link->replies = ipc::channel::create(options, ipc::endpoint_role::writer);
  offer.requests = link->requests.name();
  offer.requests_ticket = link->requests.hand_over(ipc::endpoint_role::writer);
  offer.replies = link->replies.name();
  offer.replies_ticket = link->replies.hand_over(ipc::endpoint_role::reader);
  return link;
}

// The offer of a link never reached its client (or never will): takes back
// the places its tickets hold, so that closing the link's ends is the last
// close of its channels and removes their names. A ticket already redeemed
// is an open endpoint and stays.
void withdraw_offer(link_state& link) noexcept {
  link.requests.withdraw_hand_overs();
  link.replies.withdraw_hand_overs();
}

}  // namespace

void manager_dispatch::shared::enlist(const std::shared_ptr<link_state>& link) {
  const std::lock_guard guard(lock);
  if (stopped) throw std::system_error(std::make_error_code(std::errc::operation_canceled), "manager dispatch stopped");
  forget_ended();
  links.push_back(link);
  ++running;
}

void manager_dispatch::shared::finish(link_state& link) noexcept {
  link.requests.close();
  link.replies.close();
  const std::lock_guard guard(lock);
  link.ended = true;
  --running;
  link_ended.notify_all();
}

void manager_dispatch::shared::check_open() {
  const std::lock_guard guard(lock);
  if (stopped) throw std::system_error(std::make_error_code(std::errc::operation_canceled), "manager dispatch stopped");
}

std::shared_ptr<link_state> manager_dispatch::shared::make_enlisted(link_offer& offer) {
  check_open();  // no channels made for a refusal
  auto link = make_link(offer);
  try {
    enlist(link);  // stop() may have come meanwhile
  } catch (...) {
    withdraw_offer(*link);
    throw;
  }
  return link;
}

link_offer manager_dispatch::open_link() {
  link_offer offer;
  auto link = shared_->make_enlisted(offer);
  try {
    std::thread(link_thread, shared_, link).detach();
  } catch (...) {
    withdraw_offer(*link);
    shared_->finish(*link);
    throw;
  }
  return offer;
}

void manager_dispatch::serve_here(const std::function<void(const link_offer&)>& ready) {
  link_offer offer;
  auto link = shared_->make_enlisted(offer);
  try {
    ready(offer);
  } catch (...) {
    withdraw_offer(*link);
    shared_->finish(*link);
    throw;
  }
  try {
    serve_link(*shared_->host, *link);
  } catch (const std::exception&) {
    // The link ends; the client sees end of file.
  } catch (...) {
    shared_->finish(*link);
    throw;
  }
  shared_->finish(*link);
}

std::size_t manager_dispatch::live_links() {
  const std::lock_guard guard(shared_->lock);
  return shared_->running;
}

std::size_t manager_dispatch::stop(std::chrono::milliseconds grace) {
  std::unique_lock guard(shared_->lock);
  shared_->stopped = true;
  for (const auto& link : shared_->links) {
    if (!link->ended) link->requests.close();
  }
  shared_->link_ended.wait_for(guard, grace, [&] { return shared_->running == 0; });
  shared_->forget_ended();
  return shared_->running;
}

}  // namespace mphost::runtime
