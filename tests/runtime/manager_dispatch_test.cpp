// manager_dispatch without Python: request frames, a link served by its own
// thread (in this process and from a forked client), end of file when the
// client goes, a frame that cannot be a request, and stop() with a host
// that is busy.
#include "mphost/runtime/manager_dispatch.hpp"

#include <gtest/gtest.h>

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <chrono>
#include <functional>
#include <future>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include "mphost/ipc/channel.hpp"
#include "mphost/testing/child_process.hpp"
#include "mphost/testing/watchdog.hpp"

namespace mphost::runtime {
namespace {

using namespace std::chrono_literals;

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

std::string text_of(const ipc::message& m) {
  return std::string(reinterpret_cast<const char*>(m.bytes().data()), m.size());
}

// Echoes "<tag><flags>|<ident>|<method>|<arguments>"; "block" waits until
// released; "none" answers returned_none.
class echo_host : public manager_host {
 public:
  void thread_started() override { ++started; }
  void thread_ending() override { ++ended; }
  void answer(const manager_request& r, std::string& reply) override {
    if (r.method == "block") {
      ++blocked;
      while (!release.load()) std::this_thread::sleep_for(1ms);
    }
    if (r.method == "none") {
      reply.push_back(static_cast<char>(reply_tag::returned_none));
      return;
    }
    reply.push_back(static_cast<char>(reply_tag::returned));
    reply += std::to_string(r.flags) + "|" + std::string(r.ident) + "|" + std::string(r.method) + "|" +
             std::string(reinterpret_cast<const char*>(r.arguments.data()), r.arguments.size());
  }
  void bad_request(std::span<const std::byte> frame, std::string& reply) override {
    reply.push_back(static_cast<char>(reply_tag::traceback));
    reply += "bad " + std::to_string(frame.size());
  }

  std::atomic<int> started{0}, ended{0}, blocked{0};
  std::atomic<bool> release{false};
};

struct client_ends {
  explicit client_ends(const link_offer& offer)
      : requests(ipc::channel::open(offer.requests, ipc::endpoint_role::writer, offer.requests_ticket)),
        replies(ipc::channel::open(offer.replies, ipc::endpoint_role::reader, offer.replies_ticket)) {}

  std::string call(std::uint8_t flags, std::string_view ident, std::string_view method, const std::string& args) {
    std::string frame;
    encode_request_head(flags, ident, method, frame);
    frame += args;
    return raw(frame);
  }
  std::string raw(const std::string& frame) {
    if (requests.send(bytes_of(frame), ipc::deadline::after(10s)) != ipc::wait_result::ok) return "<send failed>";
    ipc::message m;
    if (replies.recv(m, ipc::deadline::after(10s)) != ipc::wait_result::ok) return "<no reply>";
    return text_of(m);
  }

  ipc::channel requests, replies;
};

// Whether a shared memory name exists (shm_open, as the channel made it).
bool shm_name_exists(const std::string& name) {
  const int fd = ::shm_open(name.c_str(), O_RDONLY, 0);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

bool eventually(const std::function<bool()>& check) {
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (!check()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

TEST(ManagerDispatchTest, RequestHeadsRoundTripAndOverrunsAreRefused) {
  std::string frame;
  encode_request_head(request_flags::with_keywords, "7f00ab", "__setitem__", frame);
  frame += "ARGS";
  manager_request r;
  ASSERT_TRUE(decode_request(bytes_of(frame), r));
  EXPECT_EQ(r.flags, request_flags::with_keywords);
  EXPECT_EQ(r.ident, "7f00ab");
  EXPECT_EQ(r.method, "__setitem__");
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(r.arguments.data()), r.arguments.size()), "ARGS");
  std::string server;
  encode_request_head(request_flags::server_function, "", "incref", server);
  ASSERT_TRUE(decode_request(bytes_of(server), r));
  EXPECT_EQ(r.ident, "");
  EXPECT_EQ(r.method, "incref");
  EXPECT_TRUE(r.arguments.empty());
  EXPECT_FALSE(decode_request(bytes_of(frame.substr(0, 9)), r));
  EXPECT_FALSE(decode_request(bytes_of(std::string("\0\1", 2)), r));
  EXPECT_THROW(encode_request_head(0, std::string(70000, 'x'), "m", frame), std::system_error);
}

TEST(ManagerDispatchTest, ALinkIsServedUntilItsClientCloses) {
  testing::watchdog dog(30s);
  auto host = std::make_shared<echo_host>();
  manager_dispatch dispatch(host);
  {
    client_ends client(dispatch.open_link());
    EXPECT_EQ(client.call(0, "a1", "get", "k"), std::string(1, '\0') + "0|a1|get|k");
    EXPECT_EQ(client.call(3, "", "create", "xyz"), std::string(1, '\0') + "3||create|xyz");
    EXPECT_EQ(client.call(0, "a1", "none", ""), std::string(1, '\5'));
    EXPECT_EQ(client.raw(std::string("\0\x09\0", 3)), std::string(1, '\2') + "bad 3");
    EXPECT_EQ(dispatch.live_links(), 1u);
  }
  EXPECT_TRUE(eventually([&] { return dispatch.live_links() == 0; }));
  EXPECT_EQ(host->started.load(), 1);
  EXPECT_EQ(host->ended.load(), 1);
}

// The offers as lines of text, for a client in another process.
std::string offer_text(const link_offer& o) {
  return o.requests + "\n" + std::to_string(o.requests_ticket) + "\n" + o.replies + "\n" +
         std::to_string(o.replies_ticket) + "\n";
}

link_offer read_offer(std::FILE* in) {
  char name[256], ticket[32];
  link_offer o;
  auto line = [&](char* buf, int size) {
    if (std::fgets(buf, size, in) == nullptr) throw std::runtime_error("no offer");
    buf[std::strcspn(buf, "\n")] = '\0';
    return std::string(buf);
  };
  o.requests = line(name, sizeof name);
  o.requests_ticket = std::stoull(line(ticket, sizeof ticket));
  o.replies = line(name, sizeof name);
  o.replies_ticket = std::stoull(line(ticket, sizeof ticket));
  return o;
}

TEST(ManagerDispatchTest, LinksAreServedAtOnceFromAnotherProcess) {
  testing::watchdog dog(30s);
  // The client is forked before the dispatcher has threads (a fork of a
  // process whose threads hold locks is not what is tested here); it gets
  // the offers through a pipe.
  int offers[2];
  ASSERT_EQ(::pipe(offers), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(offers[1]);
    int code = 0;
    try {
      std::FILE* in = ::fdopen(offers[0], "r");
      const link_offer first = read_offer(in);
      const link_offer second = read_offer(in);
      client_ends a(first), b(second);
      for (int i = 0; i < 1000 && code == 0; ++i) {
        const std::string n = std::to_string(i);
        if (a.call(0, "x", "m", n) != std::string(1, '\0') + "0|x|m|" + n) code = 2;
        if (code == 0 && b.call(0, "y", "m", n) != std::string(1, '\0') + "0|y|m|" + n) code = 3;
      }
    } catch (...) {
      code = 4;
    }
    ::_exit(code);
  }
  ::close(offers[0]);
  auto host = std::make_shared<echo_host>();
  manager_dispatch dispatch(host);
  const std::string text = offer_text(dispatch.open_link()) + offer_text(dispatch.open_link());
  ASSERT_EQ(::write(offers[1], text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(offers[1]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  // The child's ends went with it: end of file for both links.
  EXPECT_TRUE(eventually([&] { return dispatch.live_links() == 0; }));
}

TEST(ManagerDispatchTest, StopEndsIdleLinksAndLeavesABusyOneToFinish) {
  testing::watchdog dog(30s);
  auto host = std::make_shared<echo_host>();
  auto dispatch = std::make_unique<manager_dispatch>(host);
  const link_offer idle_offer = dispatch->open_link();
  const link_offer busy_offer = dispatch->open_link();
  const std::string names[] = {idle_offer.requests, idle_offer.replies, busy_offer.requests, busy_offer.replies};
  std::optional<client_ends> idle_ends(std::in_place, idle_offer);
  std::optional<client_ends> busy_ends(std::in_place, busy_offer);
  client_ends& idle = *idle_ends;
  client_ends& busy = *busy_ends;
  for (const auto& n : names) EXPECT_TRUE(shm_name_exists(n)) << n;
  std::string frame;
  encode_request_head(0, "b", "block", frame);
  ASSERT_EQ(busy.requests.send(bytes_of(frame)), ipc::wait_result::ok);
  ASSERT_TRUE(eventually([&] { return host->blocked.load() == 1; }));
  EXPECT_EQ(dispatch->stop(50ms), 1u);
  EXPECT_THROW(dispatch->open_link(), std::system_error);
  // The idle link's client sees end of file.
  ipc::message m;
  EXPECT_EQ(idle.replies.recv(m, ipc::deadline::after(10s)), ipc::wait_result::closed);
  // The busy thread outlives the dispatcher and ends on its own.
  dispatch.reset();
  host->release = true;
  EXPECT_TRUE(eventually([&] { return host->ended.load() == 2; }));
  // The clients' closes are the last: every name of the links goes.
  idle_ends.reset();
  busy_ends.reset();
  for (const auto& n : names) EXPECT_FALSE(shm_name_exists(n)) << n;
}

// Runs `scenario` in a forked child with a /dev/shm of its own (a private
// mount namespace; needs root) and returns how many names it left there: 0
// when everything it made was removed. -1: no private /dev/shm could be had.
int names_left_by(const std::function<void()>& scenario) {
  const testing::child_result r = testing::run_in_child([&] {
    if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount("none", "/dev/shm", "tmpfs", 0, nullptr) != 0) {
      return 77;
    }
    scenario();
    int left = 0;
    if (DIR* dir = ::opendir("/dev/shm")) {
      while (dirent* e = ::readdir(dir)) {
        if (e->d_name[0] != '.') ++left;
      }
      ::closedir(dir);
    }
    return left > 50 ? 50 : left;
  });
  if (!r.exited) return 98;
  return r.code == 77 ? -1 : r.code;
}

TEST(ManagerDispatchTest, AStoppedDispatcherLeavesNoNameBehind) {
  testing::watchdog dog(30s);
  const int left = names_left_by([] {
    auto host = std::make_shared<echo_host>();
    manager_dispatch dispatch(host);
    {
      client_ends used(dispatch.open_link());
      (void)used.call(0, "q", "put", "1");
    }
    dispatch.stop(1s);
    for (int i = 0; i < 3; ++i) {
      try {
        (void)dispatch.open_link();
      } catch (const std::system_error&) {
      }
      try {
        dispatch.serve_here([](const link_offer&) {});
      } catch (const std::system_error&) {
      }
    }
  });
  if (left == -1) GTEST_SKIP() << "no private /dev/shm (needs root: unshare, mount)";
  EXPECT_EQ(left, 0);
}

TEST(ManagerDispatchTest, ARefusedLinkMakesNoChannel) {
  // A link refused after stop() makes no channel (a channel made and then
  // dropped with its tickets outstanding would keep its names for good).
  auto host = std::make_shared<echo_host>();
  manager_dispatch dispatch(host);
  const link_offer first = dispatch.open_link();
  EXPECT_EQ(dispatch.stop(1s), 0u);  // no client came: its thread waits for one
  EXPECT_THROW(dispatch.serve_here([](const link_offer&) { ADD_FAILURE() << "offered after stop"; }), std::system_error);
  EXPECT_THROW(dispatch.open_link(), std::system_error);
  // The first link's tickets still hold its channels for a client.
  ASSERT_TRUE(shm_name_exists(first.requests));
  {
    client_ends late(first);
  }
  EXPECT_FALSE(shm_name_exists(first.requests));
  EXPECT_FALSE(shm_name_exists(first.replies));
}

TEST(ManagerDispatchTest, ServeHereServesTheLinkOnTheCallingThreadUntilEndOfFile) {
  testing::watchdog dog(30s);
  auto host = std::make_shared<echo_host>();
  manager_dispatch dispatch(host);
  std::promise<link_offer> offered;
  std::thread server([&] { dispatch.serve_here([&](const link_offer& offer) { offered.set_value(offer); }); });
  {
    client_ends client(offered.get_future().get());
    EXPECT_EQ(client.call(0, "q", "put", "1"), std::string(1, '\0') + "0|q|put|1");
    EXPECT_EQ(dispatch.live_links(), 1u);
  }
  server.join();  // returned: the client's ends are gone
  EXPECT_EQ(dispatch.live_links(), 0u);
  EXPECT_EQ(host->started.load(), 0);  // the thread was the caller's
}

TEST(ManagerDispatchTest, AServeHereWhoseOfferCannotBePassedOnEndsTheLink) {
  auto host = std::make_shared<echo_host>();
  manager_dispatch dispatch(host);
  link_offer seen;
  EXPECT_THROW(dispatch.serve_here([&](const link_offer& offer) {
    seen = offer;
    throw std::runtime_error("the client is gone");
  }),
               std::runtime_error);
  EXPECT_EQ(dispatch.live_links(), 0u);
  // Its channels were closed and its tickets taken back (the offer never
  // reached a client): the names are gone, a client arriving late finds no
  // server.
  EXPECT_FALSE(shm_name_exists(seen.requests));
  EXPECT_FALSE(shm_name_exists(seen.replies));
  EXPECT_THROW(client_ends late(seen), std::system_error);
}

}  // namespace
}  // namespace mphost::runtime
