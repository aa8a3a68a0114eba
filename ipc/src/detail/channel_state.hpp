#pragma once
// Private: a channel endpoint's process-local state, shared by channel.cpp
// (send, recv, poll) and channel_endpoints.cpp (registration, fork, watcher).

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "detail/block_pool.hpp"
#include "detail/channel_layout.hpp"
#include "detail/spin.hpp"
#include "mphost/ipc/channel.hpp"
#include "mphost/ipc/doorbell.hpp"
#include "mphost/ipc/error.hpp"
#include "mphost/ipc/frame.hpp"
#include "mphost/ipc/segment.hpp"

namespace mphost::ipc {
namespace detail {

// One ring as mapped in this process. Ring 0 lives in the control segment
// (`seg` empty); later rings have segments of their own.
struct ring_map {
  segment seg;
  ring_header* hdr = nullptr;
  std::byte* data = nullptr;
  std::uint64_t capacity = 0;
  std::uint64_t mask = 0;
  std::uint64_t id = 0;
};

std::string ring_name(const std::string& channel_name, std::uint64_t id);

struct message_access {
  static void assign(message& m, const std::byte* data, std::size_t size) { m.assign(data, size); }
  static void set_block(message& m, large_block block) noexcept { m.set_block(std::move(block)); }
};

// Holds a robust_mutex of the channel for the current scope. The locks of a
// channel are held for short, bounded stretches, so a signal while waiting
// for one only makes us wait again; a dead holder is taken over, and
// took_over() says so: the ring protocol repairs what a writer killed while
// ringing left (channel_bells.cpp), the others leave nothing to repair (see
// channel_layout.hpp).
class scoped_lock {
 public:
  explicit scoped_lock(robust_mutex& m) noexcept : m_(m) {
    wait_result r = m_.lock();
    while (!acquired(r)) r = m_.lock();
    took_over_ = r == wait_result::owner_died;
  }
  ~scoped_lock() { m_.unlock(); }
  scoped_lock(const scoped_lock&) = delete;
  scoped_lock& operator=(const scoped_lock&) = delete;
  bool took_over() const noexcept { return took_over_; }

 private:
  robust_mutex& m_;
  bool took_over_ = false;
};

}  // namespace detail

namespace detail {

// Every endpoint state of this process, for fork, exec and this process's
// doorbells (channel_endpoints.cpp). In no particular order: a state knows
// its index, and leaving moves the last state into its place (O(1), so a
// process that closes thousands of endpoints at exit pays linear time).
struct endpoint_registry {
  std::mutex mutex;
  std::vector<channel::state*> states;
};
endpoint_registry& endpoints_registry();

// Eventfd doorbells in this process (channel::fileno of a reading endpoint
// without a socket doorbell); while there are none, sends and recvs do not
// look for them (channel_bells.cpp).
extern std::atomic<int> local_eventfd_bells;

// Set by the first close(false) of the process (it is exiting): from then on
// a call of a thread that asked for it (park_waiting_calls_at_exit) and was
// waiting parks instead of returning (channel.hpp).
extern std::atomic<bool> process_exiting;
extern thread_local bool park_at_exit;

// Held by each call that may wait: a call that began before the process
// started exiting and would return after parks instead (never returns), in
// threads that asked for it.
class exit_watch {
 public:
  exit_watch() noexcept : began_exiting_(process_exiting.load(std::memory_order_acquire)) {}
  void before_return(const std::atomic<bool>& cancelled) const noexcept;

 private:
  bool began_exiting_;
};

// Ring helpers (detail/channel_ring.cpp).
bool is_power_of_two(std::uint64_t x) noexcept;
// Checks a ring header found in shared memory; `room` is how many bytes the
// mapping holds from the header on.
bool valid_ring(const ring_header* h, std::uint64_t id, std::uint64_t room) noexcept;
std::shared_ptr<ring_map> make_map(ring_header* h, segment seg);
void init_ring(ring_header* h, std::uint64_t id, std::uint64_t capacity, std::uint64_t data_offset) noexcept;
// The identity of the frame at `position` of ring `ring_id` (channel.hpp).
constexpr std::uint64_t message_identity(std::uint64_t ring_id, std::uint64_t position) noexcept {
  return ((ring_id + 1) << 56) | ((position / frame_alignment) & ((std::uint64_t{1} << 56) - 1));
}
// After a commit: wakes a sleeping reader and the doorbell watchers.
void notify_readers(control& c) noexcept;
// Reserves a frame of `length` payload bytes, waiting for room as the
// deadline allows (bounded channels only); sets the header and payload.
// `identity` is set to the frame's message identity.
wait_result reserve_frame(channel::state& s, frame_kind kind, std::size_t length, std::shared_ptr<void>& ring_keep,
                          frame_header*& header, std::byte*& payload, std::uint64_t& identity, const deadline& until);
// recv (out != nullptr) or poll (out == nullptr) with waiting. A recv
// stores the identity of the message it takes into `receipt` (if any).
wait_result receive(channel::state& s, message* out, const deadline& until,
                    std::atomic<std::uint64_t>* receipt = nullptr);

}  // namespace detail

struct channel::state {
  std::shared_ptr<segment> control_segment;  // shared with blocks handed out
  detail::control* ctl = nullptr;
  // The endpoint table (detail::slot_table(*ctl)), kept here so that a fork
  // child taking over its inherited places reads nothing of the control
  // page (a read fault maps a window of pages; a write fault one).
  detail::endpoint_slot* table = nullptr;
  std::shared_ptr<detail::block_pool> blocks;
  std::string name;
  std::string block_prefix;
  endpoint_role role = endpoint_role::both;
  std::uint64_t capacity = 0;
  std::uint64_t threshold = 0;
  bool unbounded = false;

  // Endpoint registration (channel_endpoints.cpp). Atomic: a close by one
  // thread clears it while another thread's send may be reading it.
  std::atomic<std::uint32_t> slot{detail::no_slot};
  std::uint32_t slot_generation = 0;
  std::uint32_t fork_slot = detail::no_slot;
  std::uint32_t fork_generation = 0;  // of fork_slot's pending owner word
  std::size_t registry_index = ~std::size_t{0};  // in endpoints_registry().states
  // Tickets this process handed out through this endpoint (hand_over):
  // while none, withdraw_hand_overs has nothing to look for.
  std::atomic<std::uint32_t> handed_over{0};
  std::atomic<bool> closed{false};
  // Set by close(): calls in progress stop waiting and throw handle_closed.
  std::atomic<bool> cancelled{false};
  // For a call that waits, at each turn: throws handle_closed once the
  // endpoint is closed (close(true)).
  void throw_if_cancelled() const;

  std::shared_ptr<detail::ring_map> ring0;
  // Writer side, guarded by ctl->write_lock.
  std::shared_ptr<detail::ring_map> w_ring;
  std::uint64_t w_head_cache = 0;
  // Reader side, guarded by ctl->read_lock.
  std::shared_ptr<detail::ring_map> r_ring;
  std::uint64_t r_tail_cache = 0;
  // The ring readiness was last looked at in (any thread, lock-free): a
  // look at a grown channel's later ring maps it once, not at every look.
  std::atomic<std::shared_ptr<detail::ring_map>> looked_ring;

  detail::adaptive_spin recv_spin{2000, 50000};
  // channel::prompt_peer: recv spins longer before it yields the core.
  std::atomic<bool> prompt_peer{false};
  detail::adaptive_spin send_spin{1000, 20000};
  std::atomic<std::int64_t> last_reap_ns{0};

  // Doorbell and its watcher thread (channel_endpoints.cpp).
  std::mutex bell_mutex;
  std::unique_ptr<doorbell> bell;
  std::thread* watcher = nullptr;
  std::atomic<bool> watcher_stop{false};

  std::uint32_t writer_id() const noexcept { return frame_writer(slot, slot_generation); }
  std::shared_ptr<detail::ring_map> map_ring(std::uint64_t id) const;

  // Endpoint table.
  void attach(std::uint64_t ticket);  // registers this endpoint (ticket 0: none)
  void detach() noexcept;             // unregisters, wakes peers
  void ensure_slot();                 // a registration for a forked child that has none
  bool reap_dead() noexcept;          // forgets dead endpoints; true if any
  // Stops at the first live endpoint, looking from slot `from` on (the
  // pages near one's own slot are the ones already mapped).
  bool any_live_endpoint(std::uint32_t from = 0) const noexcept;
  void maybe_reap() noexcept;         // reap_dead, at most every few ms
  bool writer_gone(std::uint32_t writer) const noexcept;

  // Wake-ups.
  void wake_all_waiters() noexcept;
  void poke_watchers() noexcept;
  void stop_watcher() noexcept;

  // Doorbells (channel.hpp, Readiness; channel_endpoints.cpp). After a
  // commit, or once no writer is left: rings the channel's socket doorbell
  // if it is quiet, and this process's eventfd doorbells of the channel.
  void ring_bells() noexcept;
  // After a recv or a poll that found nothing: clears the doorbells if the
  // channel has nothing ready any more.
  void settle_bells() noexcept;
  // A reader's socket doorbell reads end of file: no writer is left.
  bool socket_peer_gone() const noexcept;
};

}  // namespace mphost::ipc
