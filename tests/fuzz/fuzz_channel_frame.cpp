// Fuzz target: a channel's receive path over arbitrary ring contents.
//
// One real channel (4 KiB ring, both ends in this process) lives for the
// whole run. Each input is laid into its ring as a writer would have left it:
//   bytes 0-1  where the published span starts in the ring (rounded to 16)
//   bytes 2-3  how many bytes are published (at most the capacity; not
//              rounded, so unaligned tails are tried too)
//   the rest   the ring's bytes from that start on, wrapping at the end
// and then channel::recv runs as a reader does, until it reports nothing
// more. The properties: recv never follows bad offsets (ASan), every error
// is errc::corrupt_frame, a data message is never above the channel's
// threshold, and the channel still works afterwards (a message sent after
// the garbage is received intact).
#include <cstdint>
#include <cstring>
#include <string>
#include <system_error>

#include "detail/channel_layout.hpp"
#include "fuzz_support.hpp"
#include "mphost/ipc/channel.hpp"
#include "mphost/ipc/segment.hpp"

namespace {

using namespace mphost;
using namespace mphost::ipc;

struct fixture {
  channel ch;
  segment view;  // a second mapping of the control segment, as the tests use
  detail::control* ctl = nullptr;
  std::byte* data = nullptr;
  std::uint64_t capacity = 0;
  std::uint64_t epoch = 0;  // keeps positions ahead of any the reader cached

  fixture() {
    channel_options o;
    o.capacity = 4096;
    o.prefix = "mphost-ch-fuzz-";
    ch = channel::create(o, endpoint_role::both);
    view = segment::open(ch.name());
    ctl = static_cast<detail::control*>(view.base());
    data = reinterpret_cast<std::byte*>(&ctl->ring0) + ctl->ring0.data_offset;
    capacity = ctl->ring0.capacity;
  }
  ~fixture() {
    const std::string name = ch.name();
    ch.close();
    channel::remove(name);
  }
};

fixture& the_channel() {
  static fixture f;
  return f;
}

std::uint64_t u16(const std::uint8_t* p) { return p[0] | (std::uint64_t{p[1]} << 8); }

// Receives until the channel has nothing more to give; true if it reported
// corruption.
bool drain(channel& ch, const detail::ring_header& ring, std::size_t threshold) {
  message m;
  bool corrupt = false;
  for (int i = 0; i < 256; ++i) {
    // Once everything published is consumed, a recv would only spin and
    // report that nothing is there: stop (keeps the run fast).
    if (ring.head.load() == ring.tail.load()) break;
    try {
      if (ch.recv(m, deadline::immediate()) != wait_result::ok) break;
      fuzz::require(m.is_block() || m.size() <= threshold, "a data frame above the threshold was delivered");
    } catch (const std::system_error& e) {
      fuzz::require_code(e, errc::corrupt_frame);
      corrupt = true;
    }
  }
  return corrupt;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* in, std::size_t size) {
  if (size < 4) return 0;
  fixture& f = the_channel();
  auto& ring = f.ctl->ring0;
  const std::uint64_t start = (u16(in) * 16) % f.capacity;
  const std::uint64_t span = u16(in + 2) % (f.capacity + 1);
  // Nothing pending from the previous input: the reader's head is moved to
  // a fresh position past everything it has seen.
  f.epoch += 4 * f.capacity;
  const std::uint64_t head = ring.tail.load() + f.epoch + f.capacity - (ring.tail.load() % f.capacity) + start;
  std::memset(f.data, 0, f.capacity);
  for (std::size_t i = 4; i < size && i - 4 < f.capacity; ++i) {
    f.data[(start + (i - 4)) % f.capacity] = static_cast<std::byte>(in[i]);
  }
  ring.head.store(head);
  ring.tail.store(head + span);
  drain(f.ch, ring, f.ch.large_threshold());
  // Whatever the garbage did, the channel goes on: a fresh message comes
  // through intact once the reader has skipped or dropped what was there.
  ring.head.store(ring.tail.load() + (16 - ring.tail.load() % 16) % 16);
  ring.tail.store(ring.head.load());
  const char probe[] = "probe";
  fuzz::require(f.ch.send(std::as_bytes(std::span(probe)), deadline::immediate()) == wait_result::ok,
                "the channel took no message after the garbage");
  message m;
  fuzz::require(f.ch.recv(m, deadline::immediate()) == wait_result::ok, "the probe message was not received");
  fuzz::require(m.size() == sizeof probe && std::memcmp(m.bytes().data(), probe, sizeof probe) == 0,
                "the probe message came back changed");
  return 0;
}
