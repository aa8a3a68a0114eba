// The ring side of channels: mapping rings, reserving frames and waiting
// for room (writers), taking frames and waiting for them (readers).
// channel.cpp holds the public calls over these; detail/channel_endpoints.cpp
// the endpoint table, fork handling and the doorbell watcher.

#include <cerrno>
#include <cstring>
#include <new>
#include <thread>

#include "detail/channel_state.hpp"
#include "mphost/ipc/error.hpp"
#include "mphost/ipc/frame.hpp"
#include "mphost/ipc/futex.hpp"

namespace mphost::ipc {
namespace detail {

std::string ring_name(const std::string& channel_name, std::uint64_t id) {
  return channel_name + ".r" + std::to_string(id);
}

bool is_power_of_two(std::uint64_t x) noexcept { return x != 0 && (x & (x - 1)) == 0; }

// Checks a ring header found in shared memory; `room` is how many bytes the
// mapping holds from the header on.
bool valid_ring(const ring_header* h, std::uint64_t id, std::uint64_t room) noexcept {
  return h->magic == detail::ring_magic && h->id == id && is_power_of_two(h->capacity) &&
         h->capacity >= detail::min_capacity && h->capacity <= detail::max_capacity &&
         h->data_offset >= sizeof(ring_header) && h->data_offset % frame_alignment == 0 && h->data_offset <= room &&
         h->capacity <= room - h->data_offset;
}

std::shared_ptr<ring_map> make_map(ring_header* h, segment seg) {
  auto m = std::make_shared<ring_map>();
  m->seg = std::move(seg);
  m->hdr = h;
  m->data = reinterpret_cast<std::byte*>(h) + h->data_offset;
  m->capacity = h->capacity;
  m->mask = h->capacity - 1;
  m->id = h->id;
  return m;
}

void init_ring(ring_header* h, std::uint64_t id, std::uint64_t capacity, std::uint64_t data_offset) noexcept {
  h->id = id;
  h->capacity = capacity;
  h->data_offset = data_offset;
  h->tail.store(0, std::memory_order_relaxed);
  h->head.store(0, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  h->magic = detail::ring_magic;
}

// Publishes a frame's commit to sleeping readers and watchers. The fence
// pairs with the readers' announcement (readers_waiting, then look again):
// either they see the commit, or we see them.
void notify_readers(control& c) noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (c.readers_waiting.load(std::memory_order_relaxed) != 0) {
    c.data_seq.fetch_add(1, std::memory_order_release);
    futex_wake(c.data_seq, 1);
  }
  if (c.watchers.load(std::memory_order_relaxed) != 0) {
    c.watch_seq.fetch_add(1, std::memory_order_release);
    futex_wake_all(c.watch_seq);
  }
}

namespace {

using namespace std::chrono_literals;

// How long a sleeper waits before it looks for dead peers on its own.
constexpr auto liveness_interval = 100ms;

[[noreturn]] void corrupt(const char* what) { throw std::system_error(errc::corrupt_frame, what); }

// After a reader moved the head of ring `r` to `new_head`: room for
// sleeping writers (see space_wanted in channel_layout.hpp), news for
// watchers.
void notify_consumed(control& c, const ring_map& r, std::uint64_t new_head) noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (c.writers_waiting.load(std::memory_order_acquire) != 0) {
    const std::uint64_t free = r.capacity - (r.hdr->tail.load(std::memory_order_relaxed) - new_head);
    std::uint64_t want = c.space_wanted.load(std::memory_order_acquire);
    if (want < r.capacity / 4) want = r.capacity / 4;
    if (free >= want) {
      c.space_wanted.store(0, std::memory_order_relaxed);
      c.space_seq.fetch_add(1, std::memory_order_release);
      futex_wake_all(c.space_seq);
    }
  }
  if (c.watchers.load(std::memory_order_relaxed) != 0) {
    c.watch_seq.fetch_add(1, std::memory_order_release);
    futex_wake_all(c.watch_seq);
  }
}

// Starts ring id+1, at least twice as large and with room for `frame`
// bytes, and makes it the ring writers append to. Under write_lock.
void grow(channel::state& s, std::uint64_t frame) {
  const ring_map& old = *s.w_ring;
  std::uint64_t capacity = old.capacity * 2;
  while (capacity < 4 * frame && capacity < detail::max_capacity) capacity <<= 1;
  if (capacity > detail::max_capacity || frame > capacity) throw std::system_error(errc::message_too_large);
  const std::uint64_t id = old.id + 1;
  const std::string name = detail::ring_name(s.name, id);
  const std::uint64_t header = (sizeof(ring_header) + 63) & ~std::uint64_t{63};
  segment seg;
  s.ctl->extra_names.store(1, std::memory_order_release);
  try {
    seg = segment::create_named(name, header + capacity);
  } catch (const std::system_error& e) {
    // A writer that died here before publishing left this name behind.
    if (e.code() != std::errc::file_exists) throw;
    segment::remove(name);
    seg = segment::create_named(name, header + capacity);
  }
  auto* h = new (seg.base()) ring_header();
  init_ring(h, id, capacity, header);
  s.w_ring = make_map(h, std::move(seg));
  s.w_head_cache = 0;
  s.ctl->tail_ring.store(id, std::memory_order_release);
}

enum class take_result { got, got_block, empty, pending };

// What a reader that found nothing watches while it spins.
struct spin_hint {
  std::shared_ptr<ring_map> keep;  // keeps a later ring mapped
  const ring_map* ring = nullptr;
  std::uint64_t head = 0;
  std::uint64_t tail = 0;
  bool pending = false;
};

void consume(control& c, ring_map& r, std::uint64_t new_head) noexcept {
  r.hdr->head.store(new_head, std::memory_order_release);
  notify_consumed(c, r, new_head);
}

// One more message taken: an observer's count (tree_state.hpp). Under
// read_lock, so a plain increment.
void count_taken(control& c) noexcept {
  c.messages_read.store(c.messages_read.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

// Drops everything published in the ring: what follows corrupt bytes cannot
// be found. Then reports the corruption.
[[noreturn]] void discard_corrupt(control& c, ring_map& r, std::uint64_t tail, const char* what) {
  if (tail % frame_alignment == 0) consume(c, r, tail);
  corrupt(what);
}

// Moves readers on to the next ring once the current one is drained and a
// later one exists. Under read_lock.
void advance_head_ring(channel::state& s) {
  const std::uint64_t old_id = s.r_ring->id;
  s.ctl->head_ring.store(old_id + 1, std::memory_order_release);
  if (old_id != 0) segment::remove(detail::ring_name(s.name, old_id));
  s.r_ring = s.map_ring(old_id + 1);
  s.r_tail_cache = s.r_ring->hdr->head.load(std::memory_order_acquire);
}

// Takes the next message into `out` (or, with out == nullptr, only says
// whether there is one). Under read_lock.
take_result take_locked(channel::state& s, message* out, bool check_writers, block_ref& ref, spin_hint& hint,
                        std::atomic<std::uint64_t>* receipt) {
  control& c = *s.ctl;
  for (;;) {
    const std::uint64_t hr = c.head_ring.load(std::memory_order_acquire);
    if (!s.r_ring || s.r_ring->id != hr) {
      s.r_ring = s.map_ring(hr);
      s.r_tail_cache = s.r_ring->hdr->head.load(std::memory_order_acquire);
    }
    ring_map& r = *s.r_ring;
    const std::uint64_t head = r.hdr->head.load(std::memory_order_relaxed);
    std::uint64_t tail = s.r_tail_cache;
    if (tail == head || tail - head > r.capacity) {
      tail = r.hdr->tail.load(std::memory_order_acquire);
      s.r_tail_cache = tail;
    }
    if (tail == head) {
      if (c.tail_ring.load(std::memory_order_acquire) > r.id) {
        // Writers have moved on; this ring's tail is final.
        tail = r.hdr->tail.load(std::memory_order_acquire);
        s.r_tail_cache = tail;
        if (tail == head) {
          advance_head_ring(s);
          continue;
        }
      } else {
        hint.keep = r.id != 0 ? s.r_ring : nullptr;
        hint.ring = &r;
        hint.head = head;
        hint.tail = tail;
        hint.pending = false;
        return take_result::empty;
      }
    }
    if (tail - head > r.capacity || head % frame_alignment != 0) discard_corrupt(c, r, tail, "channel ring positions are corrupt");
    frame_info f{};
    const std::uint64_t offset = head & r.mask;
    if (!inspect_frame(r.data, r.capacity, offset, tail - head, f) || (f.writer >> 16) >= detail::max_endpoints) {
      discard_corrupt(c, r, tail, "corrupt frame in channel");
    }
    if (f.state == frame_state::reserved) {
      if (check_writers && s.writer_gone(f.writer)) {
        // Its writer died (or closed) between reserve and commit.
        consume(c, r, head + f.size);
        count_taken(c);
        continue;
      }
      hint.keep = r.id != 0 ? s.r_ring : nullptr;
      hint.ring = &r;
      hint.head = head;
      hint.tail = tail;
      hint.pending = true;
      return take_result::pending;
    }
    const std::byte* payload = r.data + offset + sizeof(frame_header);
    take_result got = take_result::got;
    switch (f.kind) {
      case frame_kind::padding:
        consume(c, r, head + f.size);
        continue;
      case frame_kind::abandoned:
        consume(c, r, head + f.size);
        count_taken(c);
        continue;
      case frame_kind::data:
        // Writers send anything above the threshold as a block.
        if (f.length > s.threshold) discard_corrupt(c, r, tail, "oversized frame in channel");
        if (out == nullptr) return take_result::got;
        detail::message_access::assign(*out, payload, f.length);
        break;
      case frame_kind::block:
        if (f.length != sizeof(block_ref)) discard_corrupt(c, r, tail, "corrupt block frame in channel");
        if (out == nullptr) return take_result::got;
        std::memcpy(&ref, payload, sizeof ref);
        got = take_result::got_block;
        break;
    }
    consume(c, r, head + f.size);
    count_taken(c);
    // The message is ours from here: say so at once (channel.hpp, Receipts).
    if (receipt != nullptr) receipt->store(message_identity(r.id, head), std::memory_order_release);
    // More published frames and other readers asleep: pass the wake-up on,
    // so that a wake spent on a reader that found a pending frame is not lost.
    if (head + f.size != tail && c.readers_waiting.load(std::memory_order_relaxed) != 0) {
      c.data_seq.fetch_add(1, std::memory_order_release);
      futex_wake(c.data_seq, 1);
    }
    return got;
  }
}

bool hint_changed(const control& c, const spin_hint& h) noexcept {
  if (c.live_writers.load(std::memory_order_relaxed) == 0) return true;
  if (h.pending) {
    const auto* fh = reinterpret_cast<const frame_header*>(h.ring->data + (h.head & h.ring->mask));
    return fh->state.load(std::memory_order_acquire) == static_cast<std::uint32_t>(frame_state::committed);
  }
  return h.ring->hdr->tail.load(std::memory_order_acquire) != h.tail ||
         c.tail_ring.load(std::memory_order_relaxed) != h.ring->id;
}

}  // namespace

// Reserves a frame of `length` payload bytes, waiting for room as the
// deadline allows (bounded channels only).
wait_result reserve_frame(channel::state& s, frame_kind kind, std::size_t length, std::shared_ptr<void>& ring_keep,
                          frame_header*& header, std::byte*& payload, std::uint64_t& identity, const deadline& until) {
  control& c = *s.ctl;
  s.throw_if_cancelled();
  s.ensure_slot();
  const std::uint64_t size = frame_size(length);
  std::int64_t start_ns = 0;
  bool spun = false;
  // A writing-only end (a Pipe's) must see its last reader's death, as a
  // pipe's writer does, even when it never waits (an unbounded channel):
  // look for dead endpoints now and then (one clock read otherwise).
  if (static_cast<std::uint8_t>(s.role) == static_cast<std::uint8_t>(endpoint_role::writer)) s.maybe_reap();
  for (;;) {
    s.throw_if_cancelled();
    if (c.live_readers.load(std::memory_order_acquire) == 0) return wait_result::closed;
    std::shared_ptr<ring_map> full;
    std::uint64_t seen_head = 0;
    std::uint64_t wanted = 0;
    {
      detail::scoped_lock lock(c.write_lock);
      for (;;) {
        const std::uint64_t tr = c.tail_ring.load(std::memory_order_acquire);
        if (!s.w_ring || s.w_ring->id != tr) {
          s.w_ring = s.map_ring(tr);
          s.w_head_cache = s.w_ring->hdr->head.load(std::memory_order_acquire);
        }
        ring_map& r = *s.w_ring;
        const std::uint64_t tail = r.hdr->tail.load(std::memory_order_relaxed);
        if (tail % frame_alignment != 0 || tail - s.w_head_cache > r.capacity) {
          s.w_head_cache = r.hdr->head.load(std::memory_order_acquire);
          if (tail % frame_alignment != 0 || tail - s.w_head_cache > r.capacity) corrupt("channel ring positions are corrupt");
        }
        const std::uint64_t offset = tail & r.mask;
        const std::uint64_t contiguous = r.capacity - offset;
        // A frame never wraps: pad to the end of the ring first.
        const std::uint64_t need = size > contiguous ? contiguous : size;
        if (tail + need - s.w_head_cache > r.capacity) s.w_head_cache = r.hdr->head.load(std::memory_order_acquire);
        if (tail + need - s.w_head_cache <= r.capacity) {
          if (size > contiguous) {
            write_padding(r.data, r.capacity, offset, s.writer_id());
            r.hdr->tail.store(tail + contiguous, std::memory_order_release);
            continue;
          }
          header = begin_frame(r.data, offset, kind, static_cast<std::uint32_t>(length), s.writer_id());
          payload = r.data + offset + sizeof(frame_header);
          identity = message_identity(r.id, tail);
          if (r.id != 0) ring_keep = s.w_ring;
          r.hdr->tail.store(tail + size, std::memory_order_release);
          c.messages_written.store(c.messages_written.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
          if (start_ns != 0) s.send_spin.record(start_ns);
          return wait_result::ok;
        }
        if (s.unbounded) {
          grow(s, size);
          continue;
        }
        full = s.w_ring;
        seen_head = s.w_head_cache;
        wanted = need == size ? size : contiguous + size;
        break;
      }
    }
    // Full and bounded: wait for a reader to make room.
    if (until.expired()) return wait_result::timed_out;
    if (start_ns == 0) start_ns = detail::monotonic_ns();
    auto room = [&]() noexcept {
      return full->hdr->head.load(std::memory_order_acquire) != seen_head ||
             c.live_readers.load(std::memory_order_relaxed) == 0 ||
             c.tail_ring.load(std::memory_order_relaxed) != full->id;
    };
    // Spin (the budget counts from start_ns, across retries), then sleep.
    if (!spun) {
      if (s.send_spin.spin(room, start_ns)) continue;
      spun = true;
    }
    const std::uint32_t seq = c.space_seq.load(std::memory_order_acquire);
    s.throw_if_cancelled();
    // Publish what we need (keeping the smallest need), then announce
    // ourselves, then look once more.
    std::uint64_t published = c.space_wanted.load(std::memory_order_relaxed);
    while ((published == 0 || published > wanted) &&
           !c.space_wanted.compare_exchange_weak(published, wanted, std::memory_order_release, std::memory_order_relaxed)) {
    }
    c.writers_waiting.fetch_add(1, std::memory_order_seq_cst);
    if (room()) {
      c.writers_waiting.fetch_sub(1, std::memory_order_relaxed);
      continue;
    }
    const wait_result r = futex_wait(c.space_seq, seq, deadline::earliest(until, deadline::after(liveness_interval)));
    c.writers_waiting.fetch_sub(1, std::memory_order_relaxed);
    s.throw_if_cancelled();
    if (r == wait_result::interrupted) return r;
    if (r == wait_result::timed_out) {
      if (until.expired()) return wait_result::timed_out;
      s.reap_dead();
    }
  }
}

wait_result receive(channel::state& s, message* out, const deadline& until, std::atomic<std::uint64_t>* receipt) {
  control& c = *s.ctl;
  bool check_writers = false;
  bool spun = false;
  std::int64_t start_ns = 0;
  auto attempt = [&](take_result& t, spin_hint& hint) {
    block_ref ref;
    {
      detail::scoped_lock lock(c.read_lock);
      t = take_locked(s, out, check_writers, ref, hint, receipt);
    }
    if (t == take_result::got_block) detail::message_access::set_block(*out, s.blocks->adopt(ref));
    return t == take_result::got || t == take_result::got_block;
  };
  for (;;) {
    s.throw_if_cancelled();
    take_result t;
    spin_hint hint;
    if (attempt(t, hint)) {
      if (start_ns != 0) s.recv_spin.record(start_ns);
      return wait_result::ok;
    }
    if (t == take_result::empty && c.live_writers.load(std::memory_order_acquire) == 0) return wait_result::closed;
    if (until.expired()) {
      if (t == take_result::pending && !check_writers) {
        check_writers = true;
        continue;
      }
      if (t == take_result::empty) {
        // Every copy of the writers' socket is closed: they are gone, even
        // if their processes are not reaped yet (as a pipe tells it).
        if (s.socket_peer_gone()) return wait_result::closed;
        s.maybe_reap();
        if (c.live_writers.load(std::memory_order_acquire) == 0) continue;
      }
      // A doorbell that said "ready" for nothing gets re-examined.
      s.poke_watchers();
      return wait_result::timed_out;
    }
    if (start_ns == 0) start_ns = detail::monotonic_ns();
    // Spin (the budget counts from start_ns, across retries: the tail can
    // move before the frame is committed), then sleep.
    if (!spun) {
      const auto arrived = [&]() noexcept { return hint_changed(c, hint); };
      if (s.prompt_peer.load(std::memory_order_relaxed)
              ? s.recv_spin.spin(arrived, start_ns, detail::adaptive_spin::prompt_spin_ns)
              : s.recv_spin.spin_learning(arrived, start_ns)) {
        continue;
      }
      spun = true;
    }
    // Announce ourselves, then look once more before sleeping (a close()
    // bumps data_seq after it cancels: we see one or the other).
    const std::uint32_t seq = c.data_seq.load(std::memory_order_acquire);
    s.throw_if_cancelled();
    c.readers_waiting.fetch_add(1, std::memory_order_seq_cst);
    bool got;
    try {
      got = attempt(t, hint);
    } catch (...) {
      c.readers_waiting.fetch_sub(1, std::memory_order_relaxed);
      throw;
    }
    if (got || (t == take_result::empty && c.live_writers.load(std::memory_order_acquire) == 0)) {
      c.readers_waiting.fetch_sub(1, std::memory_order_relaxed);
      if (got) s.recv_spin.record(start_ns);
      return got ? wait_result::ok : wait_result::closed;
    }
    const wait_result r = futex_wait(c.data_seq, seq, deadline::earliest(until, deadline::after(liveness_interval)));
    c.readers_waiting.fetch_sub(1, std::memory_order_relaxed);
    s.throw_if_cancelled();
    if (r == wait_result::interrupted) return r;
    if (r == wait_result::timed_out) {
      s.reap_dead();
      check_writers = true;
    }
  }
}

}  // namespace detail

void channel::state::throw_if_cancelled() const {
  if (cancelled.load(std::memory_order_acquire)) throw std::system_error(errc::handle_closed);
}

namespace detail {

std::atomic<bool> process_exiting{false};
thread_local bool park_at_exit = false;

void exit_watch::before_return(const std::atomic<bool>& cancelled) const noexcept {
  if (!park_at_exit || began_exiting_ || !process_exiting.load(std::memory_order_acquire) ||
      cancelled.load(std::memory_order_acquire)) {
    return;
  }
  for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
}

}  // namespace detail

void park_waiting_calls_at_exit(bool on) noexcept { detail::park_at_exit = on; }

std::shared_ptr<detail::ring_map> channel::state::map_ring(std::uint64_t id) const {
  if (id == 0) return ring0;
  segment seg = segment::open(detail::ring_name(name, id));
  auto* h = static_cast<detail::ring_header*>(seg.base());
  std::atomic_thread_fence(std::memory_order_acquire);
  if (seg.size() < sizeof(detail::ring_header) || !detail::valid_ring(h, id, seg.size())) throw std::system_error(errc::corrupt_frame, "channel ring header is corrupt");
  return detail::make_map(h, std::move(seg));
}

}  // namespace mphost::ipc
