#include "mphost/ipc/channel.hpp"

#include <cerrno>
#include <cstring>
#include <new>

#include "detail/channel_state.hpp"
#include "mphost/ipc/error.hpp"
#include "mphost/ipc/frame.hpp"
#include "mphost/ipc/futex.hpp"

namespace mphost::ipc {

namespace {

using detail::control;

std::uint64_t round_capacity(std::size_t requested) noexcept {
  std::uint64_t c = detail::min_capacity;
  while (c < requested && c < detail::max_capacity) c <<= 1;
  return c;
}

std::shared_ptr<channel::state> make_state(segment seg, endpoint_role role) {
  auto s = std::make_shared<channel::state>();
  s->ctl = static_cast<control*>(seg.base());
  s->table = detail::slot_table(*s->ctl);
  s->control_segment = std::make_shared<segment>(std::move(seg));
  s->name = s->control_segment->name();
  s->block_prefix = (s->name[0] == '/' ? s->name.substr(1) : s->name) + ".b";
  s->blocks = std::make_shared<detail::block_pool>(s->control_segment, s->block_prefix);
  s->role = role;
  s->capacity = s->ctl->capacity;
  s->threshold = s->ctl->large_threshold;
  s->unbounded = (s->ctl->flags & detail::flag_unbounded) != 0;
  s->ring0 = detail::make_map(&s->ctl->ring0, segment());
  return s;
}

void check_role(endpoint_role role) {
  const auto r = static_cast<std::uint8_t>(role);
  if (r < 1 || r > 3) throw std::system_error(EINVAL, std::system_category(), "invalid channel endpoint role");
}

// The endpoint's state, held for the call: a close() by another thread
// meanwhile leaves it mapped until the call returns (channel.hpp, Threads).
std::shared_ptr<channel::state> usable(const std::atomic<std::shared_ptr<channel::state>>& held, endpoint_role need) {
  std::shared_ptr<channel::state> s = held.load(std::memory_order_acquire);
  if (!s || s->closed.load(std::memory_order_relaxed)) throw std::system_error(errc::handle_closed);
  if (!(static_cast<std::uint8_t>(s->role) & static_cast<std::uint8_t>(need))) {
    throw std::system_error(EBADF, std::system_category(),
                            need == endpoint_role::writer ? "channel endpoint is read-only" : "channel endpoint is write-only");
  }
  return s;
}

}  // namespace

// ---- channel ----

channel::channel() noexcept = default;
channel::channel(std::shared_ptr<state> s) noexcept : state_(std::move(s)) {}
channel::channel(channel&& other) noexcept : state_(other.state_.exchange(nullptr)) {}
channel& channel::operator=(channel&& other) noexcept {
  if (this != &other) {
    close();
    state_.store(other.state_.exchange(nullptr));
  }
  return *this;
}
channel::~channel() { close(); }

channel channel::create(const channel_options& options, endpoint_role role) {
  check_role(role);
  const std::uint64_t capacity = round_capacity(options.capacity);
  std::uint64_t threshold = options.large_threshold == 0 ? capacity / 4 : options.large_threshold;
  if (threshold > capacity / 4) threshold = capacity / 4;
  const std::uint64_t table_offset = detail::table_offset_for(sizeof(control) + capacity);
  segment seg = segment::create(table_offset + detail::table_bytes, options.prefix, table_offset + detail::table_page);
  auto* c = new (seg.base()) control();
  c->version = detail::layout_version;
  c->flags = (options.unbounded ? detail::flag_unbounded : 0) | (options.remove_when_unused ? detail::flag_remove_when_unused : 0);
  c->capacity = capacity;
  c->large_threshold = threshold;
  c->endpoint_limit = detail::max_endpoints;
  c->table_offset = table_offset;
  const auto data_offset = static_cast<std::uint64_t>(reinterpret_cast<std::byte*>(c + 1) - reinterpret_cast<std::byte*>(&c->ring0));
  detail::init_ring(&c->ring0, 0, capacity, data_offset);
  std::atomic_thread_fence(std::memory_order_release);
  c->magic = detail::control_magic;
  auto s = make_state(std::move(seg), role);
  try {
    s->attach(0);
  } catch (...) {
    segment::remove(s->name);
    throw;
  }
  return channel(std::move(s));
}

channel channel::open(const std::string& name, endpoint_role role) { return open(name, role, 0); }

channel channel::open(const std::string& name, endpoint_role role, std::uint64_t ticket) {
  check_role(role);
  segment seg = segment::open(name);
  if (seg.size() < sizeof(control)) throw std::system_error(EINVAL, std::system_category(), "'" + name + "' is not a channel");
  const auto* c = static_cast<const control*>(seg.base());
  std::atomic_thread_fence(std::memory_order_acquire);
  const auto ring0_room = static_cast<std::uint64_t>(seg.size() - (reinterpret_cast<const std::byte*>(&c->ring0) -
                                                                   reinterpret_cast<const std::byte*>(c)));
  if (c->magic != detail::control_magic || c->version != detail::layout_version ||
      c->endpoint_limit != detail::max_endpoints || !detail::is_power_of_two(c->capacity) || c->large_threshold > c->capacity / 4 ||
      c->capacity > detail::max_capacity || c->table_offset != detail::table_offset_for(sizeof(control) + c->capacity) ||
      seg.size() < c->table_offset + detail::table_bytes ||
      c->ring0.capacity != c->capacity || !detail::valid_ring(&c->ring0, 0, ring0_room)) {
    throw std::system_error(EINVAL, std::system_category(), "'" + name + "' is not a channel");
  }
  auto s = make_state(std::move(seg), role);
  s->attach(ticket);
  return channel(std::move(s));
}

std::string channel::name() const {
  const std::shared_ptr<state> s = state_.load(std::memory_order_acquire);
  return s ? s->name : std::string();
}
endpoint_role channel::role() const noexcept {
  const std::shared_ptr<state> s = state_.load(std::memory_order_acquire);
  return s ? s->role : endpoint_role::both;
}
std::size_t channel::capacity() const noexcept {
  const std::shared_ptr<state> s = state_.load(std::memory_order_acquire);
  return s ? s->capacity : 0;
}
bool channel::unbounded() const noexcept {
  const std::shared_ptr<state> s = state_.load(std::memory_order_acquire);
  return s && s->unbounded;
}
std::size_t channel::large_threshold() const noexcept {
  const std::shared_ptr<state> s = state_.load(std::memory_order_acquire);
  return s ? s->threshold : 0;
}
channel::operator bool() const noexcept { return static_cast<bool>(state_.load(std::memory_order_acquire)); }

wait_result channel::send(std::span<const std::byte> bytes, const deadline& until, std::uint64_t* sent) {
  const std::shared_ptr<state> held = usable(state_, endpoint_role::writer);
  state& s = *held;
  const detail::exit_watch exiting;
  if (bytes.size() > s.threshold) {
    // Unless it is sent, the block goes back to the pool when dropped.
    large_block block = s.blocks->take(bytes.size());
    std::memcpy(block.bytes().data(), bytes.data(), bytes.size());
    return send_block(block, until, sent);
  }
  std::shared_ptr<void> keep;
  frame_header* header = nullptr;
  std::byte* payload = nullptr;
  std::uint64_t identity = 0;
  const wait_result r = detail::reserve_frame(s, frame_kind::data, bytes.size(), keep, header, payload, identity, until);
  exiting.before_return(s.cancelled);
  if (r != wait_result::ok) return r;
  if (!bytes.empty()) std::memcpy(payload, bytes.data(), bytes.size());
  commit_frame(header);
  detail::notify_readers(*s.ctl);
  s.ring_bells();
  if (sent != nullptr) *sent = identity;
  return wait_result::ok;
}

large_block channel::make_block(std::size_t size) {
  const std::shared_ptr<state> held = usable(state_, endpoint_role::writer);
  state& s = *held;
  return s.blocks->take(size);
}

wait_result channel::send_block(large_block& block, const deadline& until, std::uint64_t* sent) {
  const std::shared_ptr<state> held = usable(state_, endpoint_role::writer);
  state& s = *held;
  if (!block) throw std::system_error(EINVAL, std::system_category(), "empty large block");
  if (block.name().compare(0, s.block_prefix.size(), s.block_prefix) != 0) {
    throw std::system_error(EINVAL, std::system_category(), "large block of another channel");
  }
  const block_ref ref = block.ref();
  std::shared_ptr<void> keep;
  frame_header* header = nullptr;
  std::byte* payload = nullptr;
  std::uint64_t identity = 0;
  const detail::exit_watch exiting;
  const wait_result r = detail::reserve_frame(s, frame_kind::block, sizeof ref, keep, header, payload, identity, until);
  exiting.before_return(s.cancelled);
  if (r != wait_result::ok) return r;
  std::memcpy(payload, &ref, sizeof ref);
  commit_frame(header);
  detail::notify_readers(*s.ctl);
  s.ring_bells();
  detail::block_access::release_in_flight(block);  // the receiver gives it back
  if (sent != nullptr) *sent = identity;
  return wait_result::ok;
}

wait_result channel::reserve(std::size_t size, reservation& out, const deadline& until) {
  const std::shared_ptr<state> held = usable(state_, endpoint_role::writer);
  state& s = *held;
  if (size > s.threshold) throw std::system_error(errc::message_too_large);
  out.abandon();
  frame_header* header = nullptr;
  std::byte* payload = nullptr;
  std::uint64_t identity = 0;
  const detail::exit_watch exiting;
  const wait_result r = detail::reserve_frame(s, frame_kind::data, size, out.ring_, header, payload, identity, until);
  exiting.before_return(s.cancelled);
  if (r != wait_result::ok) return r;
  out.owner_ = held;
  out.id_ = identity;
  out.header_ = header;
  out.payload_ = payload;
  out.size_ = size;
  return wait_result::ok;
}

wait_result channel::recv(message& out, const deadline& until, std::atomic<std::uint64_t>* receipt) {
  const std::shared_ptr<state> held = usable(state_, endpoint_role::reader);
  state& s = *held;
  out.clear();
  const detail::exit_watch exiting;
  const wait_result r = detail::receive(s, &out, until, receipt);
  if (r == wait_result::ok || r == wait_result::timed_out) s.settle_bells();
  // Closed here while it waited: that comes first, even if the wait also saw
  // the writers go (a close of a both-ways end ends its writer too).
  if (r != wait_result::ok) s.throw_if_cancelled();
  exiting.before_return(s.cancelled);
  return r;
}

wait_result channel::poll(const deadline& until) {
  const std::shared_ptr<state> held = usable(state_, endpoint_role::reader);
  state& s = *held;
  const detail::exit_watch exiting;
  const wait_result r = detail::receive(s, nullptr, until);
  if (r == wait_result::timed_out) s.settle_bells();
  if (r != wait_result::ok) s.throw_if_cancelled();
  exiting.before_return(s.cancelled);
  return r;
}

std::uint64_t channel::queued_bytes() const noexcept {
  const std::shared_ptr<state> held = state_.load(std::memory_order_acquire);
  if (!held || held->closed.load(std::memory_order_relaxed)) return 0;
  const control& c = *held->ctl;
  if (c.head_ring.load(std::memory_order_acquire) != 0) return 0;  // only ring 0 is measured here
  return c.ring0.tail.load(std::memory_order_acquire) - c.ring0.head.load(std::memory_order_acquire);
}

void channel::prompt_peer(bool on) noexcept {
  const std::shared_ptr<state> held = state_.load(std::memory_order_acquire);
  if (held) held->prompt_peer.store(on, std::memory_order_relaxed);
}

void channel::close(bool wake_waiters) noexcept {
  const std::shared_ptr<state> held = state_.exchange(nullptr);
  if (!held) return;
  // Calls of other threads in progress hold the state (and its mappings):
  // they see it cancelled when woken, and it goes with the last of them.
  if (wake_waiters) {
    held->cancelled.store(true, std::memory_order_release);
  } else {
    detail::process_exiting.store(true, std::memory_order_release);
  }
  held->detach();
  if (!wake_waiters) {
    // The process is exiting: its mappings go with it, all at once, far
    // cheaper than one munmap per endpoint (a child of a tree with
    // thousands of queues closes every end it inherited).
    static std::mutex kept_mutex;
    static auto* kept = new std::vector<std::shared_ptr<segment>>;  // never freed
    std::lock_guard lock(kept_mutex);
    try {
      kept->push_back(held->control_segment);
    } catch (...) {
    }
  }
}

// ---- reservation ----

channel::reservation::reservation() noexcept = default;
channel::reservation::~reservation() { abandon(); }
channel::reservation::reservation(reservation&& other) noexcept
    : ring_(std::move(other.ring_)),
      owner_(std::move(other.owner_)),
      header_(other.header_),
      payload_(other.payload_),
      size_(other.size_),
      id_(other.id_) {
  other.header_ = nullptr;
  other.owner_ = nullptr;
}
channel::reservation& channel::reservation::operator=(reservation&& other) noexcept {
  if (this != &other) {
    abandon();
    ring_ = std::move(other.ring_);
    owner_ = std::move(other.owner_);
    header_ = other.header_;
    payload_ = other.payload_;
    size_ = other.size_;
    id_ = other.id_;
    other.header_ = nullptr;
    other.owner_ = nullptr;
  }
  return *this;
}

void channel::reservation::commit() noexcept {
  if (header_ == nullptr) return;
  commit_frame(static_cast<frame_header*>(header_));
  detail::notify_readers(*owner_->ctl);
  owner_->ring_bells();
  header_ = nullptr;
  ring_.reset();
  owner_.reset();
}

void channel::reservation::abandon() noexcept {
  if (header_ == nullptr) return;
  abandon_frame(static_cast<frame_header*>(header_));
  detail::notify_readers(*owner_->ctl);
  header_ = nullptr;
  ring_.reset();
  owner_.reset();
}

// ---- message ----

message::message() noexcept = default;
message::~message() = default;
// A moved-from message is empty, with no buffer (the defaulted moves would
// leave it a capacity without storage).
message::message(message&& other) noexcept
    : buffer_(std::move(other.buffer_)), size_(other.size_), capacity_(other.capacity_), block_(std::move(other.block_)) {
  other.size_ = 0;
  other.capacity_ = 0;
}
message& message::operator=(message&& other) noexcept {
  if (this != &other) {
    buffer_ = std::move(other.buffer_);
    size_ = other.size_;
    capacity_ = other.capacity_;
    block_ = std::move(other.block_);
    other.size_ = 0;
    other.capacity_ = 0;
  }
  return *this;
}

std::span<const std::byte> message::bytes() const noexcept {
  if (block_) return block_.bytes();
  return {buffer_.get(), size_};
}

large_block message::release_block() noexcept {
  large_block b = std::move(block_);
  clear();
  return b;
}

void message::clear() noexcept {
  block_.reset();
  size_ = 0;
}

void message::assign(const std::byte* data, std::size_t size) {
  block_.reset();
  if (size > capacity_) {
    std::size_t cap = capacity_ < 256 ? 256 : capacity_;
    while (cap < size) cap *= 2;
    buffer_.reset(new std::byte[cap]);
    capacity_ = cap;
  }
  if (size != 0) std::memcpy(buffer_.get(), data, size);
  size_ = size;
}

void message::set_block(large_block block) noexcept {
  size_ = 0;
  block_ = std::move(block);
}

}  // namespace mphost::ipc
