#include "mphost/ipc/channel.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "detail/channel_layout.hpp"
#include "mphost/ipc/error.hpp"
#include "mphost/ipc/frame.hpp"
#include "mphost/ipc/segment.hpp"
#include "mphost/testing/child_process.hpp"
#include "mphost/testing/watchdog.hpp"
#include "channel_fixture.hpp"

namespace mphost::ipc {
namespace {

using namespace std::chrono_literals;
using mphost::testing::fork_child;
using mphost::testing::run_in_child;
using mphost::testing::wait_child;
using mphost::testing::watchdog;

std::span<const std::byte> bytes_of(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }

std::string text_of(const message& m) {
  const auto b = m.bytes();
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

bool fd_readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

class ChannelTest : public testing::channel_test_base {
 protected:
  ChannelTest() : channel_test_base("ch-") {}
};

TEST_F(ChannelTest, SendsAndReceivesMessagesOfEverySize) {
  channel ch = make(options(64 * 1024), endpoint_role::both);
  const std::size_t threshold = ch.large_threshold();
  EXPECT_EQ(threshold, 16u * 1024);
  message m;
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{15}, std::size_t{16}, std::size_t{17},
                           std::size_t{1000}, threshold, threshold + 1, std::size_t{1} << 20}) {
    std::string payload(size, '\0');
    for (std::size_t i = 0; i < size; ++i) payload[i] = static_cast<char>('a' + (i * 7 + size) % 26);
    ASSERT_EQ(ch.send(bytes_of(payload), deadline::after(5s)), wait_result::ok) << size;
    ASSERT_EQ(ch.recv(m, deadline::after(5s)), wait_result::ok) << size;
    EXPECT_EQ(m.size(), size);
    EXPECT_EQ(text_of(m), payload) << size;
    EXPECT_EQ(m.is_block(), size > threshold) << size;
  }
}

TEST_F(ChannelTest, MessagesFromOneWriterArriveInOrder) {
  channel ch = make(options(16 * 1024), endpoint_role::both);
  message m;
  std::uint64_t next_out = 0;
  for (std::uint64_t i = 0; i < 100000; ++i) {
    std::string payload = std::to_string(i) + std::string(i % 50, 'x');
    wait_result r = ch.send(bytes_of(payload), deadline::immediate());
    while (r == wait_result::timed_out) {  // full: drain some
      ASSERT_EQ(ch.recv(m, deadline::immediate()), wait_result::ok);
      ASSERT_EQ(std::stoull(text_of(m)), next_out++);
      r = ch.send(bytes_of(payload), deadline::immediate());
    }
    ASSERT_EQ(r, wait_result::ok);
  }
  while (ch.recv(m, deadline::immediate()) == wait_result::ok) ASSERT_EQ(std::stoull(text_of(m)), next_out++);
  EXPECT_EQ(next_out, 100000u);
}

TEST_F(ChannelTest, RecvOnAnEmptyChannelTimesOut) {
  watchdog guard(10s);
  channel ch = make(options(), endpoint_role::both);
  message m;
  EXPECT_EQ(ch.recv(m, deadline::immediate()), wait_result::timed_out);
  EXPECT_EQ(ch.recv(m, deadline::after(30ms)), wait_result::timed_out);
  EXPECT_EQ(ch.poll(deadline::immediate()), wait_result::timed_out);
  EXPECT_EQ(ch.poll(deadline::after(30ms)), wait_result::timed_out);
}

TEST_F(ChannelTest, PromptPeerEndpointsExchangeInTurnsAndStillTimeOutAndSleep) {
  watchdog guard(20s);
  channel requests = make(options(64 * 1024, true), endpoint_role::both);
  channel replies = make(options(64 * 1024, true), endpoint_role::both);
  requests.prompt_peer(true);
  replies.prompt_peer(true);
  message m;
  // Nothing comes: the longer spin still ends at the deadline.
  EXPECT_EQ(replies.recv(m, deadline::after(30ms)), wait_result::timed_out);
  std::thread server([&] {
    message r;
    for (int i = 0; i < 2000; ++i) {
      ASSERT_EQ(requests.recv(r, deadline::after(5s)), wait_result::ok);
      ASSERT_EQ(replies.send(r.bytes(), deadline::after(5s)), wait_result::ok);
    }
    // A late answer: the waiter has gone to sleep by then.
    ASSERT_EQ(requests.recv(r, deadline::after(5s)), wait_result::ok);
    std::this_thread::sleep_for(50ms);
    ASSERT_EQ(replies.send(r.bytes(), deadline::after(5s)), wait_result::ok);
  });
  for (int i = 0; i <= 2000; ++i) {
    const std::string payload = "call " + std::to_string(i);
    ASSERT_EQ(requests.send(bytes_of(payload), deadline::after(5s)), wait_result::ok);
    ASSERT_EQ(replies.recv(m, deadline::after(5s)), wait_result::ok);
    ASSERT_EQ(text_of(m), payload);
  }
  server.join();
  requests.prompt_peer(false);
  EXPECT_EQ(requests.recv(m, deadline::immediate()), wait_result::timed_out);
}

TEST_F(ChannelTest, BoundedSendTimesOutWhenFullAndResumesWhenRoomIsMade) {
  watchdog guard(10s);
  channel ch = make(options(4096), endpoint_role::both);
  const std::string payload(200, 'p');
  int sent = 0;
  while (ch.send(bytes_of(payload), deadline::immediate()) == wait_result::ok) ++sent;
  EXPECT_GE(sent, 15);
  EXPECT_LE(sent, 4096 / 208);
  EXPECT_EQ(ch.send(bytes_of(payload), deadline::after(30ms)), wait_result::timed_out);
  message m;
  ASSERT_EQ(ch.recv(m, deadline::immediate()), wait_result::ok);
  EXPECT_EQ(ch.send(bytes_of(payload), deadline::immediate()), wait_result::ok);
}

TEST_F(ChannelTest, BoundedWriterInAnotherProcessWaitsForTheReader) {
  watchdog guard(60s);
  channel ch = make(options(4096), endpoint_role::reader);
  const std::string name = ch.name();
  const std::uint64_t ticket = ch.hand_over(endpoint_role::writer);
  constexpr int count = 3000;
  testing::child_guard child(fork_child([&] {
    channel w = channel::open(name, endpoint_role::writer, ticket);
    for (int i = 0; i < count; ++i) {
      std::string payload = std::to_string(i) + std::string(300, '.');
      if (w.send(bytes_of(payload), deadline::after(30s)) != wait_result::ok) return 1;
    }
    return 0;
  }));
  message m;
  for (int i = 0; i < count; ++i) {
    ASSERT_EQ(ch.recv(m, deadline::after(30s)), wait_result::ok) << i;
    ASSERT_EQ(std::stoi(text_of(m)), i);
    if (i % 500 == 0) std::this_thread::sleep_for(5ms);  // let the writer fill up and sleep
  }
  const auto result = wait_child(child.release());
  EXPECT_TRUE(result.exited);
  EXPECT_EQ(result.code, 0);
  EXPECT_EQ(ch.recv(m, deadline::after(5s)), wait_result::closed);
}

TEST_F(ChannelTest, UnboundedSendNeverWaitsAndDrainedRingsAreRemoved) {
  watchdog guard(30s);
  channel ch = make(options(4096, true), endpoint_role::both);
  EXPECT_TRUE(ch.unbounded());
  constexpr int count = 20000;
  for (int i = 0; i < count; ++i) {
    std::string payload = std::to_string(i) + std::string(100, '-');
    ASSERT_EQ(ch.send(bytes_of(payload), deadline::immediate()), wait_result::ok) << i;
  }
  EXPECT_GE(testing::shm_entries(ch.name() + ".r").size(), 1u);
  message m;
  for (int i = 0; i < count; ++i) {
    ASSERT_EQ(ch.recv(m, deadline::immediate()), wait_result::ok) << i;
    ASSERT_EQ(std::stoi(text_of(m)), i);
  }
  EXPECT_EQ(ch.recv(m, deadline::immediate()), wait_result::timed_out);
  // Only the ring still being written may remain.
  EXPECT_LE(testing::shm_entries(ch.name() + ".r").size(), 1u);
  // And the channel goes on working in the grown ring.
  ASSERT_EQ(ch.send(bytes_of("after"), deadline::immediate()), wait_result::ok);
  ASSERT_EQ(ch.recv(m, deadline::immediate()), wait_result::ok);
  EXPECT_EQ(text_of(m), "after");
}

TEST_F(ChannelTest, UnboundedWriterNeverBlocksWhileAnotherProcessReadsSlowly) {
  watchdog guard(60s);
  channel ch = make(options(4096, true), endpoint_role::reader);
  const std::string name = ch.name();
  const std::uint64_t ticket = ch.hand_over(endpoint_role::writer);
  constexpr int count = 20000;
  testing::child_guard child(fork_child([&] {
    channel w = channel::open(name, endpoint_role::writer, ticket);
    for (int i = 0; i < count; ++i) {
      std::string payload = std::to_string(i) + std::string(i % 300, '+');
      if (w.send(bytes_of(payload), deadline::immediate()) != wait_result::ok) return 1;
    }
    return 0;  // exits before its messages are read
  }));
  message m;
  for (int i = 0; i < count; ++i) {
    ASSERT_EQ(ch.recv(m, deadline::after(30s)), wait_result::ok) << i;
    ASSERT_EQ(std::stoi(text_of(m)), i);
  }
  const auto result = wait_child(child.release());
  EXPECT_EQ(result.code, 0);
  EXPECT_EQ(ch.recv(m, deadline::after(5s)), wait_result::closed);
}

TEST_F(ChannelTest, LargeMessagesAreReadInPlaceFromRecycledBlocks) {
  std::string name;
  {
    channel ch = make(options(64 * 1024), endpoint_role::both);
    name = ch.name();
    std::string payload(4 << 20, '\0');
    for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 31);
    ASSERT_EQ(ch.send(bytes_of(payload), deadline::immediate()), wait_result::ok);
    const auto blocks = testing::shm_entries(name + ".b");
    ASSERT_EQ(blocks.size(), 1u);
    message m;
    ASSERT_EQ(ch.recv(m, deadline::immediate()), wait_result::ok);
    EXPECT_TRUE(m.is_block());
    EXPECT_EQ(text_of(m), payload);
    // The block can outlive the message (a memoryview over it, say).
    large_block b = m.release_block();
    EXPECT_EQ(m.size(), 0u);
    EXPECT_EQ(b.size(), payload.size());
    EXPECT_EQ(std::memcmp(b.bytes().data(), payload.data(), payload.size()), 0);
    b.reset();  // back to the channel's pool
    // The next large message travels in the same block.
    payload[0] = 'X';
    ASSERT_EQ(ch.send(bytes_of(payload), deadline::immediate()), wait_result::ok);
    EXPECT_EQ(testing::shm_entries(name + ".b"), blocks);
    ASSERT_EQ(ch.recv(m, deadline::immediate()), wait_result::ok);
    EXPECT_EQ(text_of(m), payload);
    // A block too big for the pool is removed once its message is dropped.
    std::string huge((65 << 20) + 1, 'h');
    ASSERT_EQ(ch.send(bytes_of(huge), deadline::immediate()), wait_result::ok);
    ASSERT_EQ(ch.recv(m, deadline::immediate()), wait_result::ok);
    EXPECT_EQ(m.size(), huge.size());
    m.clear();
    EXPECT_EQ(testing::shm_entries(name + ".b"), blocks);
  }
  // The last endpoint took the pooled blocks with it.
  EXPECT_TRUE(testing::shm_entries(name + ".b").empty());
  EXPECT_FALSE(testing::shm_exists(name));
}

TEST_F(ChannelTest, LargeMessagesCrossProcessesThroughTheBlockPool) {
  watchdog guard(60s);
  channel r = make(options(64 * 1024), endpoint_role::reader);
  const std::string name = r.name();
  const std::uint64_t ticket = r.hand_over(endpoint_role::writer);
  constexpr int count = 200;
  testing::child_guard child(fork_child([&] {
    release_endpoints_before_exec();
    channel w = channel::open(name, endpoint_role::writer, ticket);
    std::vector<std::byte> payload(1 << 20);
    for (int i = 0; i < count; ++i) {
      std::memset(payload.data(), i, payload.size());
      if (w.send(payload, deadline::after(30s)) != wait_result::ok) return 1;
    }
    return 0;
  }));
  message m;
  for (int i = 0; i < count; ++i) {
    ASSERT_EQ(r.recv(m, deadline::after(30s)), wait_result::ok);
    ASSERT_EQ(m.size(), 1u << 20);
    ASSERT_EQ(m.bytes()[0], static_cast<std::byte>(i));
    ASSERT_EQ(m.bytes()[(1 << 20) - 1], static_cast<std::byte>(i));
  }
  EXPECT_EQ(wait_child(child.release()).code, 0);
  m.clear();
  // Blocks were reused, not made afresh for each message.
  EXPECT_LE(testing::shm_entries(name + ".b").size(), 16u);
}

TEST_F(ChannelTest, BlockFilledInPlaceIsSentByReference) {
  channel ch = make(options(), endpoint_role::both);
  large_block b = ch.make_block(100000);
  std::memset(b.bytes().data(), 'z', b.size());
  ASSERT_EQ(ch.send_block(b, deadline::immediate()), wait_result::ok);
  EXPECT_FALSE(b);
  message m;
  ASSERT_EQ(ch.recv(m, deadline::immediate()), wait_result::ok);
  EXPECT_TRUE(m.is_block());
  EXPECT_EQ(text_of(m), std::string(100000, 'z'));
  // Only this channel's blocks can be sent on it.
  large_block foreign = large_block::create(testing::test_prefix() + "foreign.b", 100);
  testing::name_guard foreign_name(foreign.name());
  try {
    (void)ch.send_block(foreign, deadline::immediate());
    ADD_FAILURE() << "sent a foreign block";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::invalid_argument);
  }
}

TEST_F(ChannelTest, ReservationsAreCommittedOrAbandoned) {
  channel ch = make(options(), endpoint_role::both);
  message m;
  {
    channel::reservation r;
    ASSERT_EQ(ch.reserve(5, r, deadline::immediate()), wait_result::ok);
    ASSERT_EQ(r.bytes().size(), 5u);
    std::memcpy(r.bytes().data(), "hello", 5);
    EXPECT_EQ(ch.recv(m, deadline::immediate()), wait_result::timed_out);  // not yet committed
    r.commit();
  }
  ASSERT_EQ(ch.recv(m, deadline::immediate()), wait_result::ok);
  EXPECT_EQ(text_of(m), "hello");
  {
    channel::reservation r;
    ASSERT_EQ(ch.reserve(50, r, deadline::immediate()), wait_result::ok);
    std::memset(r.bytes().data(), '?', 50);
    // Destroyed uncommitted: abandoned, never delivered.
  }
  ASSERT_EQ(ch.send(bytes_of("next"), deadline::immediate()), wait_result::ok);
  ASSERT_EQ(ch.recv(m, deadline::immediate()), wait_result::ok);
  EXPECT_EQ(text_of(m), "next");
  channel::reservation too_big;
  try {
    (void)ch.reserve(ch.large_threshold() + 1, too_big, deadline::immediate());
    FAIL() << "reserved more than the threshold";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), make_error_code(errc::message_too_large));
  }
}

TEST_F(ChannelTest, PollReportsAMessageWithoutTakingIt) {
  channel ch = make(options(), endpoint_role::both);
  ASSERT_EQ(ch.send(bytes_of("x"), deadline::immediate()), wait_result::ok);
  EXPECT_EQ(ch.poll(), wait_result::ok);
  EXPECT_EQ(ch.poll(), wait_result::ok);
  message m;
  ASSERT_EQ(ch.recv(m, deadline::immediate()), wait_result::ok);
  EXPECT_EQ(ch.poll(), wait_result::timed_out);
}

TEST_F(ChannelTest, ReaderGetsClosedOnceEveryWriterHasClosed) {
  watchdog guard(30s);
  channel r = make(options(), endpoint_role::reader);
  const std::string name = r.name();
  const auto result = run_in_child([&] {
    channel w = channel::open(name, endpoint_role::writer);
    for (const char* s : {"one", "two", "three"}) {
      if (w.send(bytes_of(s), deadline::after(5s)) != wait_result::ok) return 1;
    }
    w.close();
    return 0;
  });
  ASSERT_EQ(result.code, 0);
  message m;
  for (const char* s : {"one", "two", "three"}) {
    ASSERT_EQ(r.recv(m, deadline::after(5s)), wait_result::ok);
    EXPECT_EQ(text_of(m), s);
  }
  EXPECT_EQ(r.recv(m, deadline::after(5s)), wait_result::closed);
  EXPECT_EQ(r.poll(deadline::immediate()), wait_result::closed);
}

TEST_F(ChannelTest, ReaderGetsClosedWhenTheWriterProcessIsKilled) {
  watchdog guard(30s);
  channel r = make(options(), endpoint_role::reader);
  const std::string name = r.name();
  const std::uint64_t ticket = r.hand_over(endpoint_role::writer);
  testing::child_guard child(fork_child([&]() -> int {
    release_endpoints_before_exec();  // only the writer: the inherited reader would linger
    channel w = channel::open(name, endpoint_role::writer, ticket);
    if (w.send(bytes_of("last words"), deadline::after(5s)) != wait_result::ok) return 1;
    for (;;) ::pause();
  }));
  const pid_t pid = child.release();
  message m;
  ASSERT_EQ(r.recv(m, deadline::after(10s)), wait_result::ok);
  EXPECT_EQ(text_of(m), "last words");
  std::thread killer([pid] {
    std::this_thread::sleep_for(50ms);
    ::kill(pid, SIGKILL);
  });
  // Blocked on the empty channel when the writer dies: told so, not hung.
  EXPECT_EQ(r.recv(m, deadline::after(20s)), wait_result::closed);
  killer.join();
  wait_child(pid);
}

TEST_F(ChannelTest, WriterGetsClosedWhenEveryReaderIsGone) {
  watchdog guard(30s);
  channel w = make(options(4096), endpoint_role::writer);
  const std::string name = w.name();
  const auto result = run_in_child([&] {
    channel r = channel::open(name, endpoint_role::reader);
    return 0;  // exits without closing: found dead later
  });
  ASSERT_TRUE(result.exited);
  // A writer blocked on the full channel notices the dead reader by itself.
  const std::string payload(500, 'w');
  wait_result last = wait_result::ok;
  for (int i = 0; i < 100 && last == wait_result::ok; ++i) last = w.send(bytes_of(payload), deadline::after(20s));
  EXPECT_EQ(last, wait_result::closed);
  EXPECT_EQ(w.endpoints().readers, 0u);
}

TEST_F(ChannelTest, PartialFrameOfDeadWriterIsDiscarded) {
  watchdog guard(30s);
  channel r = make(options(), endpoint_role::reader);
  channel w = channel::open(r.name(), endpoint_role::writer);
  const std::string name = r.name();
  const pid_t pid = fork_child([&] {
    channel mine = channel::open(name, endpoint_role::writer);
    if (mine.send(bytes_of("complete before"), deadline::after(5s)) != wait_result::ok) return 1;
    channel::reservation res;
    if (mine.reserve(100, res, deadline::after(5s)) != wait_result::ok) return 2;
    std::memset(res.bytes().data(), 'T', 50);  // half a message, then death
    ::raise(SIGKILL);
    return 3;
  });
  const auto result = wait_child(pid);
  ASSERT_FALSE(result.exited);
  ASSERT_EQ(result.signal, SIGKILL);
  ASSERT_EQ(w.send(bytes_of("complete after"), deadline::after(5s)), wait_result::ok);
  message m;
  ASSERT_EQ(r.recv(m, deadline::after(10s)), wait_result::ok);
  EXPECT_EQ(text_of(m), "complete before");
  ASSERT_EQ(r.recv(m, deadline::after(10s)), wait_result::ok);
  EXPECT_EQ(text_of(m), "complete after");
  EXPECT_EQ(r.recv(m, deadline::after(50ms)), wait_result::timed_out);
}

TEST_F(ChannelTest, WriterKilledMidStreamLosesNoCompleteMessage) {
  watchdog guard(60s);
  for (int round = 0; round < 5; ++round) {
    channel r = make(options(8192, true), endpoint_role::reader);
    const std::string name = r.name();
    const pid_t pid = fork_child([&] {
      channel w = channel::open(name, endpoint_role::writer);
      for (std::uint32_t i = 0;; ++i) {
        channel::reservation res;
        const std::size_t size = 8 + (i * 37) % 900;
        if (w.reserve(size, res, deadline::after(5s)) != wait_result::ok) return 1;
        std::byte* p = res.bytes().data();
        std::memcpy(p, &i, 4);
        std::memcpy(p + 4, &size, 4);
        std::memset(p + 8, static_cast<int>(i & 0xff), (size - 8) / 2);
        for (int spin = 0; spin < 2000; ++spin) std::atomic_signal_fence(std::memory_order_seq_cst);
        std::memset(p + 8 + (size - 8) / 2, static_cast<int>(i & 0xff), size - 8 - (size - 8) / 2);
        res.commit();
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + round * 7));
    ::kill(pid, SIGKILL);
    wait_child(pid);
    message m;
    std::uint32_t expect = 0;
    wait_result got;
    while ((got = r.recv(m, deadline::after(10s))) == wait_result::ok) {
      const auto b = m.bytes();
      ASSERT_GE(b.size(), 8u);
      std::uint32_t seq = 0;
      std::uint32_t size = 0;
      std::memcpy(&seq, b.data(), 4);
      std::memcpy(&size, b.data() + 4, 4);
      ASSERT_EQ(seq, expect) << "round " << round;
      ASSERT_EQ(size, b.size());
      for (std::size_t k = 8; k < b.size(); ++k) ASSERT_EQ(b[k], static_cast<std::byte>(seq & 0xff)) << "torn message";
      ++expect;
    }
    EXPECT_EQ(got, wait_result::closed);
    EXPECT_GT(expect, 0u);
  }
}

TEST_F(ChannelTest, ReadersAndWritersOnBothSidesOfFork) {
  watchdog guard(30s);
  // Pipe-like: the child keeps the writer, the parent the reader.
  channel r = make(options(), endpoint_role::reader);
  channel w = channel::open(r.name(), endpoint_role::writer);
  const pid_t pid = fork_child([&] {
    r.close();
    std::this_thread::sleep_for(50ms);  // the parent closes its writer meanwhile
    return w.send(bytes_of("from the child"), deadline::after(5s)) == wait_result::ok ? 0 : 1;
  });
  w.close();
  message m;
  // Not closed: the child's inherited writer counts from the moment of fork.
  ASSERT_EQ(r.recv(m, deadline::after(10s)), wait_result::ok);
  EXPECT_EQ(text_of(m), "from the child");
  EXPECT_EQ(wait_child(pid).code, 0);
  EXPECT_EQ(r.recv(m, deadline::after(10s)), wait_result::closed);

  // And the other way round: the child reads what the parent writes.
  channel r2 = make(options(), endpoint_role::reader);
  channel w2 = channel::open(r2.name(), endpoint_role::writer);
  const pid_t reader = fork_child([&] {
    w2.close();
    message got;
    if (r2.recv(got, deadline::after(10s)) != wait_result::ok || text_of(got) != "from the parent") return 1;
    return r2.recv(got, deadline::after(10s)) == wait_result::closed ? 0 : 2;
  });
  r2.close();
  ASSERT_EQ(w2.send(bytes_of("from the parent"), deadline::after(5s)), wait_result::ok);
  w2.close();
  EXPECT_EQ(wait_child(reader).code, 0);
}

TEST_F(ChannelTest, ManyWritersAndReadersAcrossProcessesDeliverEachMessageOnce) {
  watchdog guard(120s);
  constexpr int writers = 3;
  constexpr int readers = 2;
  constexpr std::uint32_t per_writer = 20000;
  channel ch = make(options(8192), endpoint_role::both);
  const std::string name = ch.name();
  segment results = segment::create(4096, testing::test_prefix());
  testing::name_guard results_name(results.name());
  auto* counts = new (results.base()) std::atomic<std::uint64_t>[writers * readers]{};
  std::vector<pid_t> pids;
  for (int k = 0; k < readers; ++k) {
    pids.push_back(fork_child([&, k] {
      channel in = channel::open(name, endpoint_role::reader);
      std::uint32_t last[writers];
      for (auto& l : last) l = ~0u;
      message m;
      for (;;) {
        if (in.recv(m, deadline::after(60s)) != wait_result::ok) return 1;
        if (m.size() == 1) return 0;  // stop
        std::uint32_t who = 0;
        std::uint32_t seq = 0;
        std::memcpy(&who, m.bytes().data(), 4);
        std::memcpy(&seq, m.bytes().data() + 4, 4);
        if (who >= writers) return 2;
        if (last[who] != ~0u && seq <= last[who]) return 3;  // one writer's order holds
        last[who] = seq;
        counts[who * readers + k].fetch_add(1);
      }
    }));
  }
  for (std::uint32_t j = 0; j < writers; ++j) {
    pids.push_back(fork_child([&, j] {
      channel out = channel::open(name, endpoint_role::writer);
      for (std::uint32_t i = 0; i < per_writer; ++i) {
        std::byte buf[8 + 64]{};
        std::memcpy(buf, &j, 4);
        std::memcpy(buf + 4, &i, 4);
        if (out.send(std::span<const std::byte>(buf, 8 + i % 64), deadline::after(60s)) != wait_result::ok) return 1;
      }
      return 0;
    }));
  }
  for (int j = 0; j < writers; ++j) EXPECT_EQ(wait_child(pids[readers + j]).code, 0);
  for (int k = 0; k < readers; ++k) ASSERT_EQ(ch.send(bytes_of("!"), deadline::after(10s)), wait_result::ok);
  for (int k = 0; k < readers; ++k) EXPECT_EQ(wait_child(pids[k]).code, 0);
  for (int j = 0; j < writers; ++j) {
    std::uint64_t total = 0;
    for (int k = 0; k < readers; ++k) total += counts[j * readers + k].load();
    EXPECT_EQ(total, per_writer) << "writer " << j;
  }
}

TEST_F(ChannelTest, ThreadsShareOneEndpoint) {
  watchdog guard(60s);
  channel ch = make(options(4096), endpoint_role::both);
  constexpr int per_thread = 20000;
  std::atomic<int> received{0};
  std::atomic<long> sum{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&] {
      for (int i = 1; i <= per_thread; ++i) {
        const std::string s = std::to_string(i);
        ASSERT_EQ(ch.send(bytes_of(s), deadline::after(30s)), wait_result::ok);
      }
    });
    threads.emplace_back([&] {
      message m;
      while (received.load() < 2 * per_thread) {
        const wait_result r = ch.recv(m, deadline::after(50ms));
        if (r == wait_result::ok) {
          sum.fetch_add(std::stol(text_of(m)));
          received.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(received.load(), 2 * per_thread);
  EXPECT_EQ(sum.load(), 2L * per_thread * (per_thread + 1) / 2);
}

// ---- corrupt bytes ----

// The ring of a channel as the tests see it, through a second mapping.
struct ring_view {
  segment seg;
  detail::control* ctl = nullptr;
  std::byte* data = nullptr;
  std::uint64_t capacity = 0;
  explicit ring_view(const std::string& name) : seg(segment::open(name)) {
    ctl = static_cast<detail::control*>(seg.base());
    data = reinterpret_cast<std::byte*>(&ctl->ring0) + ctl->ring0.data_offset;
    capacity = ctl->ring0.capacity;
  }
};

TEST_F(ChannelTest, BlockPoolSurvivesAHolderKilledInsideIt) {
  watchdog guard(30s);
  channel ch = make(options(64 * 1024), endpoint_role::both);
  ring_view view(ch.name());
  std::string payload(1 << 20, 'p');
  message m;
  ASSERT_EQ(ch.send(bytes_of(payload), deadline::immediate()), wait_result::ok);
  ASSERT_EQ(ch.recv(m, deadline::immediate()), wait_result::ok);
  m.clear();  // one block in the pool now
  ASSERT_EQ(view.ctl->pool_count, 1u);
  // A process dies holding the pool's lock, having scribbled on the pool.
  const auto result = run_in_child([&]() -> int {
    if (view.ctl->pool_lock.lock() != wait_result::ok) return 1;
    view.ctl->pool_count = 9;
    std::memset(&view.ctl->pool[1], 0x5a, sizeof(block_ref) * 8);
    ::raise(SIGKILL);
    return 2;
  });
  ASSERT_FALSE(result.exited);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(ch.send(bytes_of(payload), deadline::immediate()), wait_result::ok);
    ASSERT_EQ(ch.recv(m, deadline::immediate()), wait_result::ok);
    EXPECT_EQ(text_of(m), payload);
    m.clear();
  }
  EXPECT_LE(view.ctl->pool_count, 2u);  // the scribbled entries were dropped
}

TEST_F(ChannelTest, FuzzedRingBytesGiveCorruptFrameNeverACrash) {
  watchdog guard(120s);
  std::mt19937_64 rng(20240531);
  int delivered = 0;
  int corrupt = 0;
  int channels = 0;
  channel ch;
  std::unique_ptr<ring_view> view;
  auto fresh = [&] {
    ch.close();
    view.reset();
    ch = make(options(4096), endpoint_role::both);
    view = std::make_unique<ring_view>(ch.name());
    ++channels;
  };
  fresh();
  message m;
  for (int round = 0; round < 100000; ++round) {
    try {
      const int n = 1 + static_cast<int>(rng() % 3);
      bool stuck = false;
      for (int i = 0; i < n; ++i) {
        std::string payload(rng() % 200, static_cast<char>('a' + rng() % 26));
        if (ch.send(bytes_of(payload), deadline::immediate()) != wait_result::ok) stuck = true;
      }
      if (stuck) {
        fresh();
        continue;
      }
      const std::uint64_t head = view->ctl->ring0.head.load();
      const std::uint64_t tail = view->ctl->ring0.tail.load();
      const std::uint64_t span = tail - head;
      std::byte* at = view->data + (head & (view->capacity - 1));
      switch (rng() % 6) {
        case 0:  // flip bytes inside what is published
          for (int k = 0; k < 4 && span > 0; ++k) {
            const std::uint64_t pos = (head + rng() % span) & (view->capacity - 1);
            view->data[pos] = static_cast<std::byte>(rng());
          }
          break;
        case 1: {  // a header of random words
          std::uint32_t words[4];
          for (auto& w : words) w = static_cast<std::uint32_t>(rng());
          if (rng() % 2) words[0] = static_cast<std::uint32_t>(frame_state::committed);
          std::memcpy(at, words, sizeof words);
          break;
        }
        case 2: {  // truncated: the length runs past what was written
          auto* h = reinterpret_cast<frame_header*>(at);
          h->length = static_cast<std::uint32_t>(span + rng() % 100000);
          break;
        }
        case 3: {  // a block frame whose reference is garbage
          auto* h = reinterpret_cast<frame_header*>(at);
          h->kind = static_cast<std::uint16_t>(frame_kind::block);
          h->length = sizeof(block_ref);
          for (std::size_t k = 0; k < sizeof(block_ref) && sizeof(frame_header) + k < span; ++k) {
            at[sizeof(frame_header) + k] = static_cast<std::byte>(rng() % 4 ? 'a' + rng() % 26 : rng());
          }
          break;
        }
        case 4:  // garbage anywhere in the ring
          for (int k = 0; k < 16; ++k) view->data[rng() % view->capacity] = static_cast<std::byte>(rng());
          break;
        case 5:  // no corruption at all: the frames must come through intact
          break;
      }
      for (int k = 0; k < 8; ++k) {
        const wait_result r = ch.recv(m, deadline::immediate());
        if (r != wait_result::ok) break;
        ASSERT_LE(m.size(), ch.large_threshold());
        ++delivered;
      }
    } catch (const std::system_error& e) {
      ASSERT_EQ(e.code(), make_error_code(errc::corrupt_frame)) << e.what();
      ++corrupt;
    }
  }
  ch.close();
  view.reset();
  EXPECT_GT(delivered, 1000);
  EXPECT_GT(corrupt, 1000);
  RecordProperty("channels", channels);
}

TEST_F(ChannelTest, CorruptRingPositionsAreReportedAndTheChannelRecovers) {
  channel ch = make(options(4096), endpoint_role::both);
  ring_view view(ch.name());
  ASSERT_EQ(ch.send(bytes_of("a"), deadline::immediate()), wait_result::ok);
  view.ctl->ring0.head.store(view.ctl->ring0.tail.load() - 8);  // misaligned, and too close
  message m;
  try {
    ch.recv(m, deadline::immediate());
    FAIL() << "read through corrupt positions";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), make_error_code(errc::corrupt_frame));
  }
  ASSERT_EQ(ch.send(bytes_of("b"), deadline::immediate()), wait_result::ok);
  ASSERT_EQ(ch.recv(m, deadline::immediate()), wait_result::ok);
  EXPECT_EQ(text_of(m), "b");
}

// ---- doorbell ----

TEST_F(ChannelTest, DoorbellTurnsReadableWhenAMessageArrivesAndQuietWhenTaken) {
  watchdog guard(30s);
  channel r = make(options(), endpoint_role::reader);
  const std::string name = r.name();
  const std::uint64_t ticket = r.hand_over(endpoint_role::writer);  // a writer exists from here on
  const int fd = r.fileno();
  EXPECT_EQ(r.fileno(), fd);
  testing::child_guard child(fork_child([&] {
    channel w = channel::open(name, endpoint_role::writer, ticket);
    std::this_thread::sleep_for(100ms);
    if (w.send(bytes_of("ding"), deadline::after(5s)) != wait_result::ok) return 1;
    std::this_thread::sleep_for(2s);  // keep the writer alive: not closed
    return 0;
  }));
  EXPECT_FALSE(fd_readable(fd, 50));
  ASSERT_TRUE(fd_readable(fd, 10000));
  message m;
  ASSERT_EQ(r.recv(m, deadline::immediate()), wait_result::ok);
  EXPECT_EQ(text_of(m), "ding");
  // The watcher clears it soon after the message is taken.
  bool quiet = false;
  for (int i = 0; i < 500 && !quiet; ++i) {
    quiet = !fd_readable(fd, 0);
    if (!quiet) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(quiet);
  EXPECT_EQ(wait_child(child.release()).code, 0);
  // The writer has gone: readable again (end of file).
  EXPECT_TRUE(fd_readable(fd, 10000));
  EXPECT_EQ(r.recv(m, deadline::immediate()), wait_result::closed);
}

TEST_F(ChannelTest, DoorbellTurnsReadableWhenTheLastWriterCloses) {
  watchdog guard(30s);
  channel r = make(options(), endpoint_role::reader);
  channel w = channel::open(r.name(), endpoint_role::writer);
  const int fd = r.fileno();
  EXPECT_FALSE(fd_readable(fd, 50));
  w.close();
  EXPECT_TRUE(fd_readable(fd, 10000));
  message m;
  EXPECT_EQ(r.recv(m, deadline::immediate()), wait_result::closed);
}

TEST_F(ChannelTest, SocketDoorbellIsTheFilenoAndSurvivesFork) {
  watchdog guard(30s);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  channel r = make(options(), endpoint_role::reader);
  channel w = channel::open(r.name(), endpoint_role::writer);
  r.set_doorbell(doorbell::over_socket(sv[0], ::fcntl(sv[1], F_DUPFD_CLOEXEC, 0)));
  w.set_doorbell(doorbell::over_socket(sv[1], -1));
  ASSERT_NE(r.socket_doorbell(), nullptr);
  EXPECT_EQ(r.fileno(), sv[0]);
  EXPECT_EQ(w.fileno(), sv[1]);  // write-only: the socket, no watcher
  EXPECT_FALSE(fd_readable(sv[0], 50));
  // A forked child keeps the socket: its raw byte arrives at the reader's.
  testing::child_guard child(fork_child([&] {
    if (w.socket_doorbell() == nullptr || w.fileno() != sv[1]) return 1;
    if (w.send(bytes_of("m"), deadline::after(5s)) != wait_result::ok) return 2;
    return ::write(sv[1], "\0", 1) == 1 ? 0 : 3;
  }));
  EXPECT_EQ(wait_child(child.release()).code, 0);
  ASSERT_TRUE(fd_readable(sv[0], 10000));
  message m;
  ASSERT_EQ(r.recv(m, deadline::immediate()), wait_result::ok);
  EXPECT_EQ(text_of(m), "m");
  std::vector<std::byte> buf(4);
  std::vector<int> fds;
  wait_result result = wait_result::ok;
  EXPECT_EQ(r.socket_doorbell()->receive(buf, 1, fds, deadline::after(5s), result), 1);
  EXPECT_EQ(buf[0], std::byte{0});
  EXPECT_TRUE(fds.empty());
  // Drained: nothing rang it (no ring_through), nothing is left.
  EXPECT_FALSE(fd_readable(sv[0], 0));
}

// A Pipe's channel: reader socket sv[0] (with a duplicate of sv[1] until
// armed), writer socket sv[1], rung through sv[1].
struct socket_pipe {
  int sv[2] = {-1, -1};
};

socket_pipe attach_socket_pair(channel& r, channel& w) {
  socket_pipe p;
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p.sv) != 0) throw std::system_error(errno, std::system_category());
  r.ring_through(p.sv[1]);
  r.set_doorbell(doorbell::over_socket(p.sv[0], ::fcntl(p.sv[1], F_DUPFD_CLOEXEC, 0)));
  w.set_doorbell(doorbell::over_socket(p.sv[1], -1));
  return p;
}

TEST_F(ChannelTest, SocketDoorbellIsExactForAWriterInAnotherProcess) {
  watchdog guard(60s);
  channel r = make(options(), endpoint_role::reader);
  channel w = channel::open(r.name(), endpoint_role::writer);
  (void)attach_socket_pair(r, w);
  const int fd = r.fileno();  // arms: writers ring from now on
  EXPECT_EQ(r.socket_doorbell()->ring_fd(), -1) << "armed: the reader lets its duplicate of the peer go";
  int go[2], done[2];
  ASSERT_EQ(::pipe(go), 0);
  ASSERT_EQ(::pipe(done), 0);
  testing::child_guard child(fork_child([&] {
    char c;
    for (int round = 0; round < 3; ++round) {
      if (::read(go[0], &c, 1) != 1) return 1;
      for (int i = 0; i <= round; ++i) {
        if (w.send(bytes_of(std::string(1, 'm').append(std::to_string(i))), deadline::after(5s)) != wait_result::ok) return 2;
      }
      if (::write(done[1], "d", 1) != 1) return 3;
    }
    if (::read(go[0], &c, 1) != 1) return 4;
    return 0;  // exits: the writer is gone without closing its endpoint
  }));
  w.close();  // the child's is the only writer now
  message m;
  for (int round = 0; round < 3; ++round) {
    EXPECT_FALSE(fd_readable(fd, 0));
    ASSERT_EQ(::write(go[1], "g", 1), 1);
    char c;
    ASSERT_EQ(::read(done[0], &c, 1), 1);
    // Readable the moment the writer's send returned, exactly as poll says.
    EXPECT_TRUE(fd_readable(fd, 0)) << round;
    EXPECT_EQ(r.poll(deadline::immediate()), wait_result::ok);
    for (int i = 0; i <= round; ++i) {
      EXPECT_TRUE(fd_readable(fd, 0));
      ASSERT_EQ(r.recv(m, deadline::immediate()), wait_result::ok);
    }
    // Quiet the moment the last one is taken.
    EXPECT_FALSE(fd_readable(fd, 0)) << round;
    EXPECT_EQ(r.poll(deadline::immediate()), wait_result::timed_out);
  }
  ASSERT_EQ(::write(go[1], "g", 1), 1);
  EXPECT_EQ(wait_child(child.release()).code, 0);
  // Every copy of the writers' socket is gone: end of file, closed at once.
  EXPECT_TRUE(fd_readable(fd, 0));
  EXPECT_EQ(r.poll(deadline::immediate()), wait_result::closed);
  EXPECT_EQ(r.recv(m, deadline::immediate()), wait_result::closed);
  for (int f : {go[0], go[1], done[0], done[1]}) ::close(f);
}

TEST_F(ChannelTest, ArmingASocketDoorbellRingsForAMessageAlreadyWaiting) {
  watchdog guard(30s);
  channel r = make(options(), endpoint_role::reader);
  channel w = channel::open(r.name(), endpoint_role::writer);
  const socket_pipe sp = attach_socket_pair(r, w);
  ASSERT_EQ(w.send(bytes_of("early"), deadline::immediate()), wait_result::ok);
  EXPECT_FALSE(fd_readable(sp.sv[0], 0)) << "nobody asked for the descriptor: nothing rang";
  w.close();  // the writer's socket goes too: only the reader can ring now
  const int fd = r.fileno();
  EXPECT_TRUE(fd_readable(fd, 0));
  message m;
  ASSERT_EQ(r.recv(m, deadline::immediate()), wait_result::ok);
  // No writer left: end of file, readable, as poll says.
  EXPECT_TRUE(fd_readable(fd, 0));
  EXPECT_EQ(r.poll(deadline::immediate()), wait_result::closed);
}

TEST_F(ChannelTest, LastWriterClosingRingsASocketDoorbell) {
  watchdog guard(30s);
  channel r = make(options(), endpoint_role::reader);
  channel w = channel::open(r.name(), endpoint_role::writer);
  channel w2 = channel::open(r.name(), endpoint_role::writer);  // holds no socket
  (void)attach_socket_pair(r, w);
  const int fd = r.fileno();
  ASSERT_EQ(w2.send(bytes_of("x"), deadline::immediate()), wait_result::ok);
  EXPECT_TRUE(fd_readable(fd, 0)) << "w's socket is in this process: w2 rings through it";
  message m;
  ASSERT_EQ(r.recv(m, deadline::immediate()), wait_result::ok);
  EXPECT_FALSE(fd_readable(fd, 0));
  w2.close();
  EXPECT_FALSE(fd_readable(fd, 0));
  EXPECT_EQ(r.poll(deadline::immediate()), wait_result::timed_out);
  w.close();
  EXPECT_TRUE(fd_readable(fd, 0));
  EXPECT_EQ(r.poll(deadline::immediate()), wait_result::closed);
}

TEST_F(ChannelTest, SocketDoorbellRingsAfterAWriterKilledWhileRinging) {
  // A writer killed between setting the rung flag and writing its marker
  // leaves the flag set, no marker, and the bell lock held by a dead
  // process: later sends must still ring (a pool's reader would otherwise
  // sleep past the messages that are there).
  watchdog guard(30s);
  channel r = make(options(), endpoint_role::reader);
  channel w = channel::open(r.name(), endpoint_role::writer);
  (void)attach_socket_pair(r, w);
  const int fd = r.fileno();
  ring_view view(r.name());
  const auto result = run_in_child([&]() -> int {
    if (view.ctl->bell_lock.lock() != wait_result::ok) return 1;
    view.ctl->bell_rung.store(1);  // ... and killed before its marker
    ::raise(SIGKILL);
    return 2;
  });
  ASSERT_FALSE(result.exited);
  EXPECT_FALSE(fd_readable(fd, 0));
  ASSERT_EQ(w.send(bytes_of("after"), deadline::immediate()), wait_result::ok);
  EXPECT_TRUE(fd_readable(fd, 0)) << "the send after the death rings";
  message m;
  ASSERT_EQ(r.recv(m, deadline::immediate()), wait_result::ok);
  EXPECT_EQ(text_of(m), "after");
  EXPECT_FALSE(fd_readable(fd, 0));
  // The protocol works on: a send rings, the recv that empties quiets.
  ASSERT_EQ(w.send(bytes_of("again"), deadline::immediate()), wait_result::ok);
  EXPECT_TRUE(fd_readable(fd, 0));
  ASSERT_EQ(r.recv(m, deadline::immediate()), wait_result::ok);
  EXPECT_FALSE(fd_readable(fd, 0));
}

TEST_F(ChannelTest, EventfdDoorbellFollowsThisProcessAtOnce) {
  watchdog guard(30s);
  channel r = make(options(), endpoint_role::both);
  channel w = channel::open(r.name(), endpoint_role::both);
  ASSERT_EQ(w.send(bytes_of("before"), deadline::immediate()), wait_result::ok);
  const int fd = r.fileno();
  EXPECT_TRUE(fd_readable(fd, 0)) << "exact from the first fileno";
  message m;
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(w.recv(m, deadline::immediate()), wait_result::ok);  // another endpoint of this process takes it
    ASSERT_FALSE(fd_readable(fd, 0)) << i;
    ASSERT_EQ(w.send(bytes_of("again"), deadline::immediate()), wait_result::ok);
    ASSERT_TRUE(fd_readable(fd, 0)) << i;
  }
}

TEST_F(ChannelTest, OnlyASocketDoorbellCanBeSet) {
  channel r = make(options(), endpoint_role::reader);
  EXPECT_THROW(r.set_doorbell(doorbell()), std::system_error);
  EXPECT_EQ(r.socket_doorbell(), nullptr);
  channel w = channel::open(r.name(), endpoint_role::writer);
  EXPECT_THROW(w.fileno(), std::system_error);  // write-only, no socket
}

// ---- endpoints, tickets, exec ----

TEST_F(ChannelTest, HandedOverEndpointKeepsTheChannelOpenUntilClaimed) {
  watchdog guard(30s);
  channel r = make(options(), endpoint_role::reader);
  channel w = channel::open(r.name(), endpoint_role::writer);
  const std::uint64_t ticket = w.hand_over(endpoint_role::writer);
  w.close();
  EXPECT_EQ(r.poll(deadline::after(30ms)), wait_result::timed_out);  // not closed: a writer is on its way
  const std::string name = r.name();
  const pid_t pid = fork_child([&] {
    release_endpoints_before_exec();  // as a freshly started process: inherits nothing
    std::this_thread::sleep_for(50ms);
    channel mine = channel::open(name, endpoint_role::writer, ticket);
    return mine.send(bytes_of("claimed"), deadline::after(5s)) == wait_result::ok ? 0 : 1;
  });
  message m;
  ASSERT_EQ(r.recv(m, deadline::after(10s)), wait_result::ok);
  EXPECT_EQ(text_of(m), "claimed");
  EXPECT_EQ(wait_child(pid).code, 0);
  EXPECT_EQ(r.recv(m, deadline::after(10s)), wait_result::closed);
}

TEST_F(ChannelTest, ExpiredTicketNoLongerHoldsTheChannelOpen) {
  watchdog guard(30s);
  channel r = make(options(), endpoint_role::reader);
  channel w = channel::open(r.name(), endpoint_role::writer);
  (void)w.hand_over(endpoint_role::writer, std::chrono::seconds(0));
  w.close();
  message m;
  EXPECT_EQ(r.recv(m, deadline::after(10s)), wait_result::closed);
}

TEST_F(ChannelTest, ReleasingEndpointsBeforeExecDropsInheritedRegistrations) {
  watchdog guard(30s);
  channel r = make(options(), endpoint_role::reader);
  channel w = channel::open(r.name(), endpoint_role::writer);
  // A forked child keeps its inherited writer registered...
  testing::child_guard keeper(fork_child([]() -> int {
    for (;;) ::pause();
  }));
  // ...unless it releases its endpoints as if about to exec.
  testing::child_guard execer(fork_child([]() -> int {
    release_endpoints_before_exec();
    for (;;) ::pause();
  }));
  w.close();
  message m;
  EXPECT_EQ(r.recv(m, deadline::after(300ms)), wait_result::timed_out);
  const pid_t k = keeper.release();
  ::kill(k, SIGKILL);
  wait_child(k);
  EXPECT_EQ(r.recv(m, deadline::after(10s)), wait_result::closed);
}

TEST_F(ChannelTest, EndpointsAreCountedAndDeadOnesForgotten) {
  watchdog guard(30s);
  channel a = make(options(), endpoint_role::reader);
  channel b = channel::open(a.name(), endpoint_role::writer);
  channel c = channel::open(a.name(), endpoint_role::both);
  auto n = a.endpoints();
  EXPECT_EQ(n.readers, 2u);
  EXPECT_EQ(n.writers, 2u);
  const std::string name = a.name();
  const auto result = run_in_child([&] {
    channel d = channel::open(name, endpoint_role::writer);
    return 0;  // dies registered
  });
  ASSERT_TRUE(result.exited);
  // The fork itself registered the child's inherited copies; all are gone now.
  n = a.endpoints();
  EXPECT_EQ(n.readers, 2u);
  EXPECT_EQ(n.writers, 2u);
  c.close();
  n = a.endpoints();
  EXPECT_EQ(n.readers, 1u);
  EXPECT_EQ(n.writers, 1u);
}

TEST_F(ChannelTest, UntakenTicketKeepsNamesUntilWithdrawn) {
  std::string name;
  {
    channel a = make(options(), endpoint_role::reader);
    name = a.name();
    (void)a.hand_over(endpoint_role::writer);  // for a process that never comes
    a.withdraw_hand_overs();
  }
  EXPECT_FALSE(testing::shm_exists(name));
  {
    channel a = make(options(), endpoint_role::reader);
    name = a.name();
    (void)a.hand_over(endpoint_role::writer);
  }
  // The ticket's holder (this process) lives on: the place is still reserved.
  EXPECT_TRUE(testing::shm_exists(name));
  EXPECT_TRUE(channel::remove(name));
}

TEST_F(ChannelTest, NamesAreRemovedWithTheLastEndpoint) {
  std::string name;
  {
    channel a = make(options(), endpoint_role::reader);
    channel b = channel::open(a.name(), endpoint_role::writer);
    name = a.name();
    EXPECT_TRUE(testing::shm_exists(name));
    a.close();
    EXPECT_TRUE(testing::shm_exists(name));
  }
  EXPECT_FALSE(testing::shm_exists(name));

  // Peers that died without closing do not keep the names alive.
  {
    channel a = make(options(), endpoint_role::both);
    name = a.name();
    const auto result = run_in_child([&] {
      channel b = channel::open(name, endpoint_role::both);
      ::_exit(0);  // no close, no destructors
      return 0;
    });
    ASSERT_TRUE(result.exited);
    EXPECT_TRUE(testing::shm_exists(name));
  }
  EXPECT_FALSE(testing::shm_exists(name));

  channel_options keep = options();
  keep.remove_when_unused = false;
  {
    channel a = make(keep, endpoint_role::both);
    name = a.name();
  }
  EXPECT_TRUE(testing::shm_exists(name));
  EXPECT_TRUE(channel::remove(name));
  EXPECT_FALSE(testing::shm_exists(name));
}

TEST_F(ChannelTest, EndpointsRefuseTheDirectionTheyLackAndUseAfterClose) {
  channel r = make(options(), endpoint_role::reader);
  channel w = channel::open(r.name(), endpoint_role::writer);
  message m;
  try {
    r.send(bytes_of("x"));
    ADD_FAILURE() << "a reader sent";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::bad_file_descriptor);
  }
  try {
    w.recv(m, deadline::immediate());
    ADD_FAILURE() << "a writer received";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::bad_file_descriptor);
  }
  w.close();
  try {
    w.send(bytes_of("x"));
    ADD_FAILURE() << "sent on a closed endpoint";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), make_error_code(errc::handle_closed));
  }
}

TEST_F(ChannelTest, OpeningSomethingElseThrowsEINVAL) {
  const std::string name = testing::test_prefix() + "notachannel";
  testing::name_guard names(name);
  segment seg = segment::create_named(name, 1 << 20);
  try {
    channel::open(name, endpoint_role::reader);
    FAIL() << "opened a segment that is not a channel";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::invalid_argument);
  }
}

void ignore_signal(int) {}

TEST_F(ChannelTest, SignalHandlerInterruptsABlockedRecv) {
  watchdog guard(30s);
  channel ch = make(options(), endpoint_role::both);
  struct sigaction sa {};
  struct sigaction old {};
  sa.sa_handler = &ignore_signal;
  sigemptyset(&sa.sa_mask);
  ASSERT_EQ(::sigaction(SIGUSR1, &sa, &old), 0);
  const pthread_t self = ::pthread_self();
  std::atomic<bool> stop{false};
  std::thread poker([&] {
    while (!stop.load()) {
      std::this_thread::sleep_for(30ms);
      ::pthread_kill(self, SIGUSR1);
    }
  });
  message m;
  wait_result r;
  do {
    r = ch.recv(m, deadline::after(10s));
  } while (r == wait_result::timed_out);
  stop.store(true);
  poker.join();
  ::sigaction(SIGUSR1, &old, nullptr);
  EXPECT_EQ(r, wait_result::interrupted);
}

TEST_F(ChannelTest, SendReportsIdentitiesThatRecvStoresIntoAReceipt) {
  watchdog guard(30s);
  // Small and unbounded: the stream crosses several rings; large messages
  // travel as blocks; reservations commit.
  channel ch = make(options(4096, true), endpoint_role::both);
  std::vector<std::uint64_t> sent_ids;
  std::vector<std::string> payloads;
  for (int i = 0; i < 400; ++i) {
    std::string payload = std::to_string(i) + std::string(static_cast<std::size_t>(i % 7 == 0 ? 3000 : i % 90), 'q');
    std::uint64_t id = 0;
    if (i % 5 == 4 && payload.size() <= ch.large_threshold()) {
      channel::reservation space;
      ASSERT_EQ(ch.reserve(payload.size(), space, deadline::immediate()), wait_result::ok);
      std::memcpy(space.bytes().data(), payload.data(), payload.size());
      space.commit();
      id = space.id();
    } else {
      ASSERT_EQ(ch.send(bytes_of(payload), deadline::immediate(), &id), wait_result::ok);
    }
    EXPECT_NE(id, 0u);
    sent_ids.push_back(id);
    payloads.push_back(payload);
  }
  std::vector<std::uint64_t> sorted = sent_ids;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end()) << "identities repeat";
  EXPECT_GT(sent_ids.back() >> 56, 1u) << "the stream should have crossed into later rings";
  // The receipt may live anywhere, e.g. in another shared segment.
  segment receipts = segment::create(64, testing::test_prefix() + "rc-");
  testing::name_guard receipts_guard;
  receipts_guard.set(receipts.name(), &segment::remove);
  auto* receipt = new (static_cast<std::byte*>(receipts.base()) + 8) std::atomic<std::uint64_t>(0);
  message m;
  for (std::size_t i = 0; i < sent_ids.size(); ++i) {
    ASSERT_EQ(ch.recv(m, deadline::immediate(), receipt), wait_result::ok);
    EXPECT_EQ(text_of(m), payloads[i]);
    EXPECT_EQ(receipt->load(std::memory_order_acquire), sent_ids[i]) << i;
  }
  // Nothing taken: the receipt keeps its value.
  EXPECT_EQ(ch.recv(m, deadline::immediate(), receipt), wait_result::timed_out);
  EXPECT_EQ(receipt->load(), sent_ids.back());
}

TEST_F(ChannelTest, ReceiptOfAReaderKilledAfterTheTakeNamesTheMessage) {
  watchdog guard(30s);
  channel ch = make(options(), endpoint_role::both);
  segment receipts = segment::create(64, testing::test_prefix() + "rc-");
  testing::name_guard receipts_guard;
  receipts_guard.set(receipts.name(), &segment::remove);
  auto* receipt = new (receipts.base()) std::atomic<std::uint64_t>(0);
  std::uint64_t first = 0;
  std::uint64_t second = 0;
  ASSERT_EQ(ch.send(bytes_of("task one"), deadline::immediate(), &first), wait_result::ok);
  ASSERT_EQ(ch.send(bytes_of(std::string(100000, 't')), deadline::immediate(), &second), wait_result::ok);
  const mphost::testing::child_result died = run_in_child([&] {
    message m;
    if (ch.recv(m, deadline::after(5s), receipt) != wait_result::ok) return 2;
    ::kill(::getpid(), SIGKILL);  // dies holding the message
    return 3;
  });
  EXPECT_FALSE(died.exited);
  EXPECT_EQ(died.signal, SIGKILL);
  EXPECT_EQ(receipt->load(std::memory_order_acquire), first);
  message m;
  std::atomic<std::uint64_t> mine{0};
  ASSERT_EQ(ch.recv(m, deadline::after(5s), &mine), wait_result::ok);
  EXPECT_TRUE(m.is_block());
  EXPECT_EQ(mine.load(), second);
}

// ---- close under a waiting thread ----

// Runs `blocked` in a thread, closes `ch` from this one once it waits, and
// expects the thread to end with errc::handle_closed.
void expect_close_wakes(channel& ch, const std::function<void()>& blocked) {
  std::atomic<int> outcome{0};  // 1: handle_closed, 2: returned, 3: other error
  std::thread t([&] {
    try {
      blocked();
      outcome = 2;
    } catch (const std::system_error& e) {
      outcome = e.code() == make_error_code(errc::handle_closed) ? 1 : 3;
    }
  });
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(outcome.load(), 0) << "it should be waiting";
  const auto start = std::chrono::steady_clock::now();
  ch.close();
  t.join();
  EXPECT_EQ(outcome.load(), 1);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST_F(ChannelTest, CloseWakesABlockedRecvAndPollWithHandleClosed) {
  watchdog guard(30s);
  for (bool poll : {false, true}) {
    channel r = make(options(), endpoint_role::reader);
    channel w = channel::open(r.name(), endpoint_role::writer);
    expect_close_wakes(r, [&] {
      message m;
      if (poll) {
        (void)r.poll(deadline::infinite());
      } else {
        (void)r.recv(m, deadline::infinite());
      }
    });
    // The writer sees the reader gone.
    EXPECT_EQ(w.send(bytes_of("x"), deadline::immediate()), wait_result::closed);
  }
}

TEST_F(ChannelTest, CloseWakesABlockedBoundedSend) {
  watchdog guard(30s);
  channel w = make(options(4096), endpoint_role::writer);
  channel r = channel::open(w.name(), endpoint_role::reader);
  const std::string payload(500, 'f');
  while (w.send(bytes_of(payload), deadline::immediate()) == wait_result::ok) {
  }
  expect_close_wakes(w, [&] { (void)w.send(bytes_of(payload), deadline::infinite()); });
  message m;
  int left = 0;
  while (r.recv(m, deadline::immediate()) == wait_result::ok) ++left;
  EXPECT_GT(left, 0);
  EXPECT_EQ(r.recv(m, deadline::immediate()), wait_result::closed);
}

TEST_F(ChannelTest, CloseWakesAThreadReadingTheSocket) {
  watchdog guard(30s);
  channel r = make(options(), endpoint_role::reader);
  channel w = channel::open(r.name(), endpoint_role::writer);
  (void)attach_socket_pair(r, w);
  expect_close_wakes(r, [&] {
    std::vector<std::byte> buf(16);
    std::vector<int> fds;
    wait_result result;
    (void)r.receive_socket(buf, 1, fds, deadline::infinite(), result);
  });
}

TEST_F(ChannelTest, ManyThreadsBlockedInOneEndpointAllWakeOnClose) {
  watchdog guard(30s);
  for (int round = 0; round < 20; ++round) {
    channel r = make(options(), endpoint_role::both);
    std::atomic<int> woken{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) {
      threads.emplace_back([&, i] {
        message m;
        try {
          if (i % 2) {
            (void)r.poll(deadline::after(20s));
          } else {
            (void)r.recv(m, deadline::after(20s));
          }
        } catch (const std::system_error&) {
          ++woken;
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(round % 5));
    r.close();
    for (auto& t : threads) t.join();
    EXPECT_EQ(woken.load(), 4);
  }
}

TEST_F(ChannelTest, AReservationOutlivesTheClose) {
  channel r = make(options(), endpoint_role::reader);
  channel w = channel::open(r.name(), endpoint_role::writer);
  channel::reservation space;
  ASSERT_EQ(w.reserve(3, space, deadline::immediate()), wait_result::ok);
  w.close();
  std::memcpy(space.bytes().data(), "abc", 3);
  space.commit();
  message m;
  ASSERT_EQ(r.recv(m, deadline::immediate()), wait_result::ok);
  EXPECT_EQ(text_of(m), "abc");
}

}  // namespace
}  // namespace mphost::ipc
