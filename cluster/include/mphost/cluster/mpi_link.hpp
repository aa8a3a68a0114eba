#pragma once
// mpi_link: framed messages between the ranks of MPI_COMM_WORLD, moved by one
// progress thread, with a file descriptor that is readable while received
// frames wait. No Python here; _mphost_mpi (mpi_module.cpp) binds it.
//
// Contract
// - init() starts MPI with MPI_Init_thread(MPI_THREAD_SERIALIZED) (or adopts
//   an MPI that someone else started, and then leaves MPI_Finalize to them),
//   sets MPI_ERRORS_RETURN on MPI_COMM_WORLD, reads rank, size and processor
//   name, and starts ONE progress thread. From then until finalize() returns,
//   that thread makes every MPI call; no other method calls MPI (abort() hands
//   MPI_Abort to it, and calls it itself only if the thread does not answer).
// - A frame is (kind, header bytes, parts). send() copies the header and
//   queues the frame; each part is a (pointer, size) view that the caller
//   keeps alive and unchanged until take_sent() returns the frame's ticket.
//   send() never blocks and never calls MPI.
// - Wire: one message with tag_head holding a fixed prefix (magic, kind,
//   number of parts, chunk size, each part's size as u64) then the header;
//   then the parts, each as ceil(size / chunk) messages with tag_part from
//   the same source (none for an empty part). MPI's non-overtaking rule keeps
//   them in order. The chunk is at most 512 MiB (MPI counts are int);
//   MPHOST_MPI_CHUNK_BYTES sets it (a test crosses chunk boundaries cheaply).
//   The receiver reads the chunk size from the prefix, so ranks need not
//   agree on the variable.
// - Receiving: the thread probes heads (MPI_Improbe + MPI_Mrecv), posts
//   receives for the parts into freshly allocated, uninitialised blocks and,
//   once every part of a frame arrived, queues it as ready and adds 1 to the
//   semaphore eventfd (EFD_SEMAPHORE|EFD_NONBLOCK|EFD_CLOEXEC). receive()
//   takes one ready frame and reads 1 from it, both under one lock, so the fd
//   is readable exactly while ready frames wait. Frames from one source are
//   made ready in the order that source sent them.
// - A head whose prefix is malformed (short, wrong magic, sizes that do not
//   add up, memory that cannot be had) is dropped and counted (dropped()).
// - Idle: the thread keeps polling while transfers are under way and for
//   250 us after the last activity (MPHOST_MPI_SPIN_US; an arriving message
//   cannot wake a sleep), yielding the CPU now and then; then it sleeps in
//   ppoll() on a wake eventfd (rung by send()), the timeout growing from
//   20 us to at most 1 ms (MPHOST_MPI_IDLE_US sets the maximum); any
//   activity resets it.
// - Errors: an MPI call that fails throws std::runtime_error with
//   MPI_Error_string's text (init), or, in the thread, stops the thread and
//   records the text: every later send/receive/pending throws it, and the
//   eventfd is made readable so a waiter notices.
// - finalize() lets the queued sends complete (giving up after 10 s), stops
//   the thread, cancels the receives still posted and calls MPI_Finalize.
//   After finalize() (or before init()) send/receive throw
//   std::logic_error("the MPI link is not running"). A process forked from
//   the one that called init() must not use the link; finalize() there only
//   forgets it (no join, no MPI call).
// - Thread safety: the public methods may be called from any one thread at a
//   time (the binding calls them under the GIL).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mphost::cluster {

// A block of received bytes: header or part. Owns its memory.
class block {
public:
    block() = default;
    explicit block(std::size_t size);  // uninitialised
    std::byte* data() noexcept { return size_ ? data_.get() : &empty_; }
    const std::byte* data() const noexcept { return size_ ? data_.get() : &empty_; }
    std::size_t size() const noexcept { return size_; }

private:
    std::unique_ptr<std::byte[]> data_;
    std::size_t size_ = 0;
    static inline std::byte empty_{};
};

struct part_view {
    const void* data;
    std::size_t size;
};

struct frame {
    int source = -1;
    int kind = 0;
    block header;
    std::vector<block> parts;
};

class mpi_link {
public:
    static constexpr int tag_head = 0x6d70;   // "mp"
    static constexpr int tag_part = 0x6d71;
    static constexpr int max_kind = 255;
    static constexpr std::uint32_t magic = 0x4d50484c;  // "MPHL"

    mpi_link();
    ~mpi_link();  // finalize() if still running (errors swallowed)
    mpi_link(const mpi_link&) = delete;
    mpi_link& operator=(const mpi_link&) = delete;

    void init();  // idempotent while running; throws std::runtime_error
    bool running() const noexcept;
    int rank() const noexcept { return rank_; }
    int size() const noexcept { return size_; }
    const std::string& host() const noexcept { return host_; }
    int fileno() const noexcept;  // the semaphore eventfd; -1 before init

    // Queues a frame; returns its ticket. Throws std::invalid_argument for a
    // bad dest or kind, std::logic_error when not running, std::runtime_error
    // after a fault of the thread.
    std::uint64_t send(int dest, int kind, const void* header, std::size_t header_size,
                       std::vector<part_view> parts);
    // Tickets of frames whose every message completed since the last call.
    std::vector<std::uint64_t> take_sent();
    std::optional<frame> receive();  // never blocks
    std::size_t pending() const;     // frames queued or in flight outbound
    std::uint64_t dropped() const noexcept;  // malformed heads dropped

    void finalize();
    [[noreturn]] void abort(int code);

private:
    struct state;
    void run_progress();
    void check_usable() const;

    std::unique_ptr<state> s_;
    int rank_ = -1;
    int size_ = 0;
    std::string host_;
};

}  // namespace mphost::cluster
