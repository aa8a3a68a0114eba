// mpi_link: see the contract in mpi_link.hpp.
#include "mphost/cluster/mpi_link.hpp"

#include <mpi.h>

#include <dlfcn.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <new>
#include <stdexcept>
#include <thread>

namespace mphost::cluster {
namespace {

using clock_type = std::chrono::steady_clock;

constexpr std::size_t default_chunk = std::size_t{512} << 20;
constexpr std::size_t prefix_fixed = 4 + 4 + 8 + 8;  // magic, kind, parts, chunk
constexpr std::uint64_t max_part_size = std::uint64_t{1} << 48;
constexpr auto default_spin = std::chrono::microseconds(250);
constexpr auto idle_min = std::chrono::microseconds(20);
constexpr auto finalize_patience = std::chrono::seconds(10);

std::string mpi_error_text(int rc) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(rc);
    return std::string(text, static_cast<std::size_t>(len));
}

void check(int rc, const char* call) {
    if (rc != MPI_SUCCESS) throw std::runtime_error(std::string(call) + ": " + mpi_error_text(rc));
}

std::size_t env_size(const char* name, std::size_t fallback, std::size_t lo, std::size_t hi) {
    const char* text = std::getenv(name);
    if (!text || !*text) return fallback;
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(text, &end, 10);
    if (errno || *end || v < lo || v > hi) return fallback;
    return static_cast<std::size_t>(v);
}

template <class T>
void put(std::byte*& at, T value) {
    std::memcpy(at, &value, sizeof value);
    at += sizeof value;
}

template <class T>
T get(const std::byte*& at) {
    T value;
    std::memcpy(&value, at, sizeof value);
    at += sizeof value;
    return value;
}

// OpenMPI's components are loaded with dlopen and expect libmpi's symbols to
// be global; a Python extension is loaded RTLD_LOCAL. Promote the library
// that is already loaded (RTLD_NOLOAD), as mpi4py does.
void make_libmpi_global() {
    Dl_info info{};
    if (dladdr(reinterpret_cast<void*>(&MPI_Init_thread), &info) && info.dli_fname)
        dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
}

void add_to_eventfd(int fd, std::uint64_t n) {
    while (::write(fd, &n, sizeof n) < 0 && errno == EINTR) {
    }
}

}  // namespace

block::block(std::size_t size) : data_(size ? new std::byte[size] : nullptr), size_(size) {}

struct outbound {
    std::uint64_t ticket = 0;
    int dest = 0;
    std::vector<std::byte> head;  // prefix + header
    std::vector<part_view> parts;
    std::vector<MPI_Request> requests;
};

struct inbound {
    frame f;
    std::vector<MPI_Request> requests;
};

struct mpi_link::state {
    // Shared between the caller and the thread, under mu.
    std::mutex mu;
    std::deque<std::unique_ptr<outbound>> queued;
    std::vector<std::uint64_t> sent;
    std::deque<frame> ready;
    std::string fault;

    std::atomic<std::size_t> pending{0};
    std::atomic<std::size_t> queued_count{0};
    std::atomic<std::uint64_t> dropped{0};
    std::atomic<bool> sleeping{false};
    std::atomic<bool> stop{false};
    std::atomic<bool> abort_requested{false};
    std::atomic<bool> thread_done{false};
    std::atomic<int> abort_code{0};
    clock_type::time_point stop_deadline{};

    int ready_fd = -1;
    int wake_fd = -1;
    std::thread thread;
    bool running = false;
    bool finalized = false;
    bool owns_mpi = false;
    pid_t pid = 0;
    std::uint64_t next_ticket = 1;
    std::size_t chunk = default_chunk;
    std::chrono::microseconds idle_max{1000};
    std::chrono::microseconds spin{default_spin};

    // The thread's own.
    std::vector<std::unique_ptr<outbound>> out_flight;
    std::vector<std::unique_ptr<inbound>> in_flight;

    void ring() { add_to_eventfd(wake_fd, 1); }
    bool start_queued_sends();
    bool test_sends();
    bool probe_heads(int world_size);
    bool test_receives(int world_size);
    void accept_head(std::vector<std::byte>& raw, int source);
    void cancel_receives();
    void idle(clock_type::time_point last_active, int& polls, std::chrono::microseconds& sleep);
};

bool mpi_link::state::start_queued_sends() {
    if (queued_count.load() == 0) return false;
    std::deque<std::unique_ptr<outbound>> batch;
    {
        std::lock_guard lock(mu);
        batch.swap(queued);
        queued_count.store(0);
    }
    for (auto& out : batch) {
        out->requests.reserve(1 + out->parts.size());
        MPI_Request r;
        check(MPI_Isend(out->head.data(), static_cast<int>(out->head.size()), MPI_BYTE, out->dest, tag_head,
                        MPI_COMM_WORLD, &r),
              "MPI_Isend");
        out->requests.push_back(r);
        for (const part_view& p : out->parts) {
            auto* bytes = static_cast<const std::byte*>(p.data);
            for (std::size_t at = 0; at < p.size; at += chunk) {
                int n = static_cast<int>(std::min(chunk, p.size - at));
                check(MPI_Isend(bytes + at, n, MPI_BYTE, out->dest, tag_part, MPI_COMM_WORLD, &r), "MPI_Isend");
                out->requests.push_back(r);
            }
        }
        out_flight.push_back(std::move(out));
    }
    return true;
}

bool mpi_link::state::test_sends() {
    std::vector<std::uint64_t> done;
    for (auto it = out_flight.begin(); it != out_flight.end();) {
        int flag = 0;
        auto& reqs = (*it)->requests;
        check(MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &flag, MPI_STATUSES_IGNORE), "MPI_Testall");
        if (flag) {
            done.push_back((*it)->ticket);
            it = out_flight.erase(it);
        } else {
            ++it;
        }
    }
    if (done.empty()) return false;
    std::lock_guard lock(mu);
    sent.insert(sent.end(), done.begin(), done.end());
    pending.fetch_sub(done.size());
    return true;
}

void mpi_link::state::accept_head(std::vector<std::byte>& raw, int source) {
    const std::size_t n = raw.size();
    if (n < prefix_fixed) {
        dropped.fetch_add(1);
        return;
    }
    const std::byte* at = raw.data();
    auto mark = get<std::uint32_t>(at);
    auto kind = get<std::int32_t>(at);
    auto count = get<std::uint64_t>(at);
    auto chunk_bytes = get<std::uint64_t>(at);
    if (mark != magic || kind < 0 || kind > max_kind || count > (n - prefix_fixed) / 8 || chunk_bytes == 0 ||
        chunk_bytes > INT_MAX) {
        dropped.fetch_add(1);
        return;
    }
    std::vector<std::uint64_t> sizes(count);
    for (auto& s : sizes) {
        s = get<std::uint64_t>(at);
        if (s > max_part_size) {
            dropped.fetch_add(1);
            return;
        }
    }
    auto in = std::make_unique<inbound>();
    in->f.source = source;
    in->f.kind = kind;
    const std::size_t header_size = n - prefix_fixed - 8 * count;
    try {
        in->f.header = block(header_size);
        in->f.parts.reserve(count);
        for (auto s : sizes) in->f.parts.emplace_back(static_cast<std::size_t>(s));
    } catch (const std::bad_alloc&) {
        // The parts are on their way and would be taken for the next frame's:
        // the stream from this source cannot be kept in step.
        throw std::runtime_error("cannot allocate memory for a frame from rank " + std::to_string(source));
    }
    std::memcpy(in->f.header.data(), at, header_size);
    for (block& b : in->f.parts) {
        for (std::size_t off = 0; off < b.size(); off += chunk_bytes) {
            int len = static_cast<int>(std::min<std::size_t>(chunk_bytes, b.size() - off));
            MPI_Request r;
            check(MPI_Irecv(b.data() + off, len, MPI_BYTE, source, tag_part, MPI_COMM_WORLD, &r), "MPI_Irecv");
            in->requests.push_back(r);
        }
    }
    in_flight.push_back(std::move(in));
}

bool mpi_link::state::probe_heads(int /*world_size*/) {
    bool any = false;
    std::vector<std::byte> raw;
    for (int i = 0; i < 64; ++i) {
        int flag = 0;
        MPI_Message msg;
        MPI_Status st;
        check(MPI_Improbe(MPI_ANY_SOURCE, tag_head, MPI_COMM_WORLD, &flag, &msg, &st), "MPI_Improbe");
        if (!flag) break;
        int count = 0;
        check(MPI_Get_count(&st, MPI_BYTE, &count), "MPI_Get_count");
        raw.resize(static_cast<std::size_t>(std::max(count, 0)));
        check(MPI_Mrecv(raw.data(), count, MPI_BYTE, &msg, MPI_STATUS_IGNORE), "MPI_Mrecv");
        accept_head(raw, st.MPI_SOURCE);
        any = true;
    }
    return any;
}

bool mpi_link::state::test_receives(int world_size) {
    if (in_flight.empty()) return false;
    std::vector<char> blocked(static_cast<std::size_t>(world_size), 0);
    std::vector<frame> done;
    for (auto it = in_flight.begin(); it != in_flight.end();) {
        auto src = static_cast<std::size_t>((*it)->f.source);
        int flag = 0;
        if (!blocked[src]) {
            auto& reqs = (*it)->requests;
            check(MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &flag, MPI_STATUSES_IGNORE),
                  "MPI_Testall");
        }
        if (flag) {
            done.push_back(std::move((*it)->f));
            it = in_flight.erase(it);
        } else {
            blocked[src] = 1;  // later frames of this source wait for this one
            ++it;
        }
    }
    if (done.empty()) return false;
    std::lock_guard lock(mu);
    for (auto& f : done) ready.push_back(std::move(f));
    add_to_eventfd(ready_fd, done.size());
    return true;
}

void mpi_link::state::cancel_receives() {
    for (auto& in : in_flight)
        for (auto& r : in->requests) {
            if (r == MPI_REQUEST_NULL) continue;
            MPI_Cancel(&r);
            MPI_Wait(&r, MPI_STATUS_IGNORE);
        }
    in_flight.clear();
    for (auto& out : out_flight)
        for (auto& r : out->requests)
            if (r != MPI_REQUEST_NULL) MPI_Request_free(&r);
    out_flight.clear();
}

void mpi_link::state::idle(clock_type::time_point last_active, int& polls, std::chrono::microseconds& sleep) {
    // Transfers under way progress only while MPI is called; and a message
    // that arrives cannot wake ppoll(), so keep polling a while after the
    // last activity (a reply usually follows soon).
    if (++polls % 16 == 0) sched_yield();
    if (!out_flight.empty() || !in_flight.empty() || clock_type::now() - last_active < spin) return;
    sleeping.store(true);
    if (queued_count.load() == 0 && !stop.load() && !abort_requested.load()) {
        struct pollfd p{wake_fd, POLLIN, 0};
        auto secs = std::chrono::duration_cast<std::chrono::seconds>(sleep);
        struct timespec ts{static_cast<time_t>(secs.count()),
                           static_cast<long>(std::chrono::nanoseconds(sleep - secs).count())};
        if (::ppoll(&p, 1, &ts, nullptr) > 0) {
            std::uint64_t drain;
            [[maybe_unused]] auto r = ::read(wake_fd, &drain, sizeof drain);
        }
    }
    sleeping.store(false);
    sleep = std::min(sleep * 2, idle_max);
}

void mpi_link::run_progress() {
    state& s = *s_;
    int polls = 0;
    auto sleep = idle_min;
    auto last_active = clock_type::now();
    try {
        for (;;) {
            if (s.abort_requested.load()) MPI_Abort(MPI_COMM_WORLD, s.abort_code.load());
            bool active = s.start_queued_sends();
            active |= s.test_sends();
            active |= s.probe_heads(size_);
            active |= s.test_receives(size_);
            if (s.stop.load()) {
                if ((s.out_flight.empty() && s.queued_count.load() == 0) || clock_type::now() > s.stop_deadline)
                    break;
            }
            if (active) {
                polls = 0;
                sleep = idle_min;
                last_active = clock_type::now();
            } else {
                s.idle(last_active, polls, sleep);
            }
        }
    } catch (const std::exception& e) {
        std::lock_guard lock(s.mu);
        s.fault = e.what();
        add_to_eventfd(s.ready_fd, 1);  // wake a waiter so it sees the fault
    }
    s.cancel_receives();
    s.thread_done.store(true);
}

mpi_link::mpi_link() : s_(std::make_unique<state>()) {}

mpi_link::~mpi_link() {
    try {
        finalize();
    } catch (...) {
    }
}

bool mpi_link::running() const noexcept { return s_ && s_->running; }

int mpi_link::fileno() const noexcept { return s_ && s_->running ? s_->ready_fd : -1; }

void mpi_link::init() {
    state& s = *s_;
    if (s.running) return;
    if (s.finalized) throw std::runtime_error("MPI cannot be started again after it was finalized");
    make_libmpi_global();
    int already = 0;
    check(MPI_Initialized(&already), "MPI_Initialized");
    if (!already) {
        int provided = 0;
        check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
        s.owns_mpi = true;
        if (provided < MPI_THREAD_SERIALIZED) {
            MPI_Finalize();
            s.finalized = true;
            throw std::runtime_error("MPI_Init_thread: the MPI library does not provide MPI_THREAD_SERIALIZED");
        }
    }
    try {
        check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
        check(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
        check(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");
        char name[MPI_MAX_PROCESSOR_NAME];
        int len = 0;
        check(MPI_Get_processor_name(name, &len), "MPI_Get_processor_name");
        host_.assign(name, static_cast<std::size_t>(len));
        s.ready_fd = ::eventfd(0, EFD_SEMAPHORE | EFD_NONBLOCK | EFD_CLOEXEC);
        s.wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (s.ready_fd < 0 || s.wake_fd < 0)
            throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
    } catch (...) {
        if (s.ready_fd >= 0) ::close(s.ready_fd);
        if (s.wake_fd >= 0) ::close(s.wake_fd);
        s.ready_fd = s.wake_fd = -1;
        if (s.owns_mpi) MPI_Finalize();
        s.finalized = true;
        throw;
    }
    s.chunk = env_size("MPHOST_MPI_CHUNK_BYTES", default_chunk, 1, default_chunk);
    s.idle_max = std::chrono::microseconds(env_size("MPHOST_MPI_IDLE_US", 1000, 20, 1000000));
    s.spin = std::chrono::microseconds(env_size("MPHOST_MPI_SPIN_US", 250, 0, 1000000));
    s.pid = ::getpid();
    s.running = true;
    s.thread = std::thread([this] { run_progress(); });
}

void mpi_link::check_usable() const {
    if (!s_ || !s_->running) throw std::logic_error("the MPI link is not running");
}

std::uint64_t mpi_link::send(int dest, int kind, const void* header, std::size_t header_size,
                             std::vector<part_view> parts) {
    check_usable();
    state& s = *s_;
    if (dest < 0 || dest >= size_)
        throw std::invalid_argument("dest " + std::to_string(dest) + " is not a rank of " + std::to_string(size_));
    if (kind < 0 || kind > max_kind)
        throw std::invalid_argument("kind must be in 0.." + std::to_string(max_kind) + ", not " +
                                    std::to_string(kind));
    auto out = std::make_unique<outbound>();
    out->dest = dest;
    out->head.resize(prefix_fixed + 8 * parts.size() + header_size);
    std::byte* at = out->head.data();
    put<std::uint32_t>(at, magic);
    put<std::int32_t>(at, kind);
    put<std::uint64_t>(at, parts.size());
    put<std::uint64_t>(at, s.chunk);
    for (const auto& p : parts) put<std::uint64_t>(at, p.size);
    if (header_size) std::memcpy(at, header, header_size);
    out->parts = std::move(parts);
    std::lock_guard lock(s.mu);
    if (!s.fault.empty()) throw std::runtime_error(s.fault);
    out->ticket = s.next_ticket++;
    std::uint64_t ticket = out->ticket;
    s.queued.push_back(std::move(out));
    s.pending.fetch_add(1);
    s.queued_count.fetch_add(1);
    if (s.sleeping.load()) s.ring();
    return ticket;
}

std::vector<std::uint64_t> mpi_link::take_sent() {
    std::vector<std::uint64_t> out;
    if (!s_) return out;
    std::lock_guard lock(s_->mu);
    out.swap(s_->sent);
    return out;
}

std::optional<frame> mpi_link::receive() {
    check_usable();
    state& s = *s_;
    std::lock_guard lock(s.mu);
    if (s.ready.empty()) {
        if (!s.fault.empty()) throw std::runtime_error(s.fault);
        return std::nullopt;
    }
    frame f = std::move(s.ready.front());
    s.ready.pop_front();
    std::uint64_t one;
    [[maybe_unused]] auto r = ::read(s.ready_fd, &one, sizeof one);
    return f;
}

std::size_t mpi_link::pending() const {
    check_usable();
    std::lock_guard lock(s_->mu);
    if (!s_->fault.empty()) throw std::runtime_error(s_->fault);
    return s_->pending.load();
}

std::uint64_t mpi_link::dropped() const noexcept { return s_ ? s_->dropped.load() : 0; }

void mpi_link::finalize() {
    if (!s_ || !s_->running) return;
    state& s = *s_;
    if (::getpid() != s.pid) {
        // A forked copy: the thread is not ours, MPI belongs to the parent.
        (void)s_.release();
        s_ = std::make_unique<state>();
        s_->finalized = true;
        return;
    }
    s.stop_deadline = clock_type::now() + finalize_patience;
    s.stop.store(true);
    s.ring();
    s.thread.join();
    s.running = false;
    s.finalized = true;
    ::close(s.wake_fd);
    ::close(s.ready_fd);
    s.wake_fd = s.ready_fd = -1;
    {
        std::lock_guard lock(s.mu);
        s.ready.clear();
        s.queued.clear();
    }
    if (s.owns_mpi) {
        int done = 0;
        MPI_Finalized(&done);
        if (!done) check(MPI_Finalize(), "MPI_Finalize");
    }
}

void mpi_link::abort(int code) {
    if (s_ && s_->running && ::getpid() == s_->pid && !s_->thread_done.load()) {
        s_->abort_code.store(code);
        s_->abort_requested.store(true);
        s_->ring();
        auto until = clock_type::now() + std::chrono::seconds(2);
        while (clock_type::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    int up = 0, down = 0;
    MPI_Initialized(&up);
    MPI_Finalized(&down);
    if (up && !down) MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
}

}  // namespace mphost::cluster
