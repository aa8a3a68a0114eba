// mpi_link_test: run by mpiexec with 3 ranks (see CMakeLists.txt). Every rank
// sends every rank (itself too) a stream of frames with 0..5 parts, empty
// parts and parts that cross MPHOST_MPI_CHUNK_BYTES (4096 in ctest), ranks 0
// and 1 send each other large frames at the same time, and each receiver
// checks contents and per-source order. Rank 2 starts MPI itself and sends
// two malformed heads to rank 0 first, which rank 0 must drop and count.
// A failed check exits 1, which makes mpiexec end the job; alarm() turns a
// hang into a failure.
//
// `mpi_link_test --bench` (2 ranks) prints the ping-pong latency and the
// bandwidth of 1 MiB parts.
#include "mphost/cluster/mpi_link.hpp"

#include <mpi.h>

#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

using mphost::cluster::frame;
using mphost::cluster::mpi_link;
using mphost::cluster::part_view;

namespace {

int g_rank = -1;

#define CHECK(cond)                                                                                   \
    do {                                                                                              \
        if (!(cond)) {                                                                                \
            std::fprintf(stderr, "rank %d: %s:%d: check failed: %s\n", g_rank, __FILE__, __LINE__, #cond); \
            std::fflush(stderr);                                                                      \
            std::_Exit(1);                                                                            \
        }                                                                                             \
    } while (0)

constexpr int frames_per_peer = 60;
constexpr int frames_to_self = 3;
constexpr int kind_small = 3;
constexpr int kind_big = 7;
constexpr std::size_t big_part = std::size_t{2} << 20;
const std::size_t sizes[] = {0, 1, 4095, 4096, 4097, 3 * 4096 + 5, 100000};

std::byte pattern(int src, int seq, std::size_t part, std::size_t j) {
    return static_cast<std::byte>((src * 31 + seq * 7 + static_cast<int>(part) * 13 + static_cast<int>(j)) & 0xff);
}

bool is_big(int src, int dest, int seq) { return src + dest == 1 && seq % 20 == 10; }

std::vector<std::size_t> part_sizes(int src, int dest, int seq) {
    if (is_big(src, dest, seq)) return {big_part, big_part + 1};
    std::vector<std::size_t> out;
    for (int i = 0; i < seq % 6; ++i) out.push_back(sizes[(seq + i) % 7]);
    return out;
}

std::string header_of(int src, int seq) { return std::to_string(src) + ":" + std::to_string(seq) + std::string(static_cast<std::size_t>(seq), 'h'); }

// Waits up to 30 s for a frame.
frame next_frame(mpi_link& link) {
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (;;) {
        if (auto f = link.receive()) return std::move(*f);
        CHECK(std::chrono::steady_clock::now() < until);
        struct pollfd p{link.fileno(), POLLIN, 0};
        ::poll(&p, 1, 100);
    }
}

void check_frame(const frame& f, int me, std::map<int, int>& next_seq) {
    std::string head(reinterpret_cast<const char*>(f.header.data()), f.header.size());
    auto colon = head.find(':');
    CHECK(colon != std::string::npos);
    int src = std::stoi(head.substr(0, colon));
    int seq = std::stoi(head.substr(colon + 1));
    CHECK(src == f.source);
    CHECK(head == header_of(src, seq));
    CHECK(seq == next_seq[src]);  // order per source
    next_seq[src] = seq + 1;
    CHECK(f.kind == (is_big(src, me, seq) ? kind_big : kind_small));
    auto want = part_sizes(src, me, seq);
    CHECK(f.parts.size() == want.size());
    for (std::size_t i = 0; i < want.size(); ++i) {
        CHECK(f.parts[i].size() == want[i]);
        for (std::size_t j = 0; j < want[i]; j += (want[i] > 5000 ? 97 : 1))
            CHECK(f.parts[i].data()[j] == pattern(src, seq, i, j));
        if (want[i]) CHECK(f.parts[i].data()[want[i] - 1] == pattern(src, seq, i, want[i] - 1));
    }
}

void send_garbage_heads() {
    const char junk[] = "this is not a frame head";
    CHECK(MPI_Send(junk, sizeof junk, MPI_BYTE, 0, mpi_link::tag_head, MPI_COMM_WORLD) == MPI_SUCCESS);
    // Right magic, but it claims 1000 part sizes that the message lacks.
    std::vector<std::byte> head(40);
    std::uint32_t mark = mpi_link::magic;
    std::int32_t kind = 1;
    std::uint64_t parts = 1000, chunk = 4096;
    std::memcpy(head.data(), &mark, 4);
    std::memcpy(head.data() + 4, &kind, 4);
    std::memcpy(head.data() + 8, &parts, 8);
    std::memcpy(head.data() + 16, &chunk, 8);
    CHECK(MPI_Send(head.data(), 40, MPI_BYTE, 0, mpi_link::tag_head, MPI_COMM_WORLD) == MPI_SUCCESS);
}

int run_conformance() {
    mpi_link link;
    int world = 0;
    bool adopted = false;
    {
        // Rank 2 (from MPI's own view) starts MPI itself and sends garbage first.
        const char* r = std::getenv("OMPI_COMM_WORLD_RANK");
        if (r && std::atoi(r) == 2) {
            int provided = 0;
            CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided) == MPI_SUCCESS);
            send_garbage_heads();
            adopted = true;
        }
    }
    link.init();
    link.init();  // idempotent
    g_rank = link.rank();
    world = link.size();
    CHECK(world == 3);
    CHECK(!link.host().empty());
    CHECK(link.fileno() >= 0);
    const int me = g_rank;

    bool threw = false;
    try { link.send(world, 0, nullptr, 0, {}); } catch (const std::invalid_argument&) { threw = true; }
    CHECK(threw);
    threw = false;
    try { link.send(0, mpi_link::max_kind + 1, nullptr, 0, {}); } catch (const std::invalid_argument&) { threw = true; }
    CHECK(threw);

    // Outbound: every part's memory stays alive until its ticket comes back.
    std::deque<std::vector<std::byte>> memory;
    std::map<std::uint64_t, int> tickets;
    auto send_one = [&](int dest, int seq) {
        std::vector<part_view> views;
        auto want = part_sizes(me, dest, seq);
        for (std::size_t i = 0; i < want.size(); ++i) {
            auto& m = memory.emplace_back(want[i]);
            for (std::size_t j = 0; j < want[i]; ++j) m[j] = pattern(me, seq, i, j);
            views.push_back({m.data(), m.size()});
        }
        std::string head = header_of(me, seq);
        auto t = link.send(dest, is_big(me, dest, seq) ? kind_big : kind_small, head.data(), head.size(),
                           std::move(views));
        head.assign(head.size(), 'X');  // the header was copied
        tickets[t] = dest;
    };
    for (int seq = 0; seq < frames_per_peer; ++seq)
        for (int dest = 0; dest < world; ++dest)
            if (dest != me) send_one(dest, seq);
            else if (seq < frames_to_self) send_one(dest, seq);
    CHECK(link.pending() <= tickets.size());

    std::map<int, int> next_seq;
    int expected = (world - 1) * frames_per_peer + frames_to_self;
    for (int got = 0; got < expected; ++got) check_frame(next_frame(link), me, next_seq);
    for (int src = 0; src < world; ++src) CHECK(next_seq[src] == (src == me ? frames_to_self : frames_per_peer));
    // Nothing waits: the fd is not readable and receive() finds nothing.
    struct pollfd p{link.fileno(), POLLIN, 0};
    CHECK(::poll(&p, 1, 0) == 0);
    CHECK(!link.receive());
    if (me == 0) CHECK(link.dropped() == 2);
    else CHECK(link.dropped() == 0);

    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!tickets.empty()) {
        for (auto t : link.take_sent()) CHECK(tickets.erase(t) == 1);
        CHECK(std::chrono::steady_clock::now() < until);
        ::usleep(1000);
    }
    CHECK(link.pending() == 0);

    link.finalize();
    link.finalize();  // idempotent
    CHECK(!link.running());
    threw = false;
    try { link.send(0, 0, nullptr, 0, {}); } catch (const std::logic_error& e) {
        threw = std::string(e.what()) == "the MPI link is not running";
    }
    CHECK(threw);
    threw = false;
    try { link.receive(); } catch (const std::logic_error&) { threw = true; }
    CHECK(threw);
    if (adopted) {
        int done = 0;
        MPI_Finalized(&done);
        CHECK(!done);  // an adopted MPI is left to whoever started it
        MPI_Finalize();
    }
    std::printf("rank %d: mpi_link checks passed (%d frames in)\n", me, expected);
    return 0;
}

int run_bench() {
    mpi_link link;
    link.init();
    g_rank = link.rank();
    CHECK(link.size() >= 2);
    const int me = g_rank;
    if (me > 1) { link.finalize(); return 0; }
    const int peer = 1 - me;
    const char head[8] = {};
    // Ping-pong: header-only frames.
    const int rounds = 5000, warm = 200;
    std::chrono::steady_clock::time_point t0;
    for (int i = 0; i < rounds + warm; ++i) {
        if (i == warm) t0 = std::chrono::steady_clock::now();
        if (me == 0) {
            link.send(peer, 1, head, sizeof head, {});
            next_frame(link);
        } else {
            next_frame(link);
            link.send(peer, 1, head, sizeof head, {});
        }
        link.take_sent();
    }
    double rtt = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / rounds;
    // Bandwidth: rank 0 streams 1 MiB parts, rank 1 acknowledges the last.
    const int frames = 400;
    std::vector<std::byte> mib(std::size_t{1} << 20, std::byte{1});
    t0 = std::chrono::steady_clock::now();
    if (me == 0) {
        for (int i = 0; i < frames; ++i) link.send(peer, 2, head, sizeof head, {{mib.data(), mib.size()}});
        next_frame(link);
    } else {
        for (int i = 0; i < frames; ++i) next_frame(link);
        link.send(peer, 3, head, sizeof head, {});
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    while (link.pending()) ::usleep(100);
    if (me == 0)
        std::printf("mpi_link bench: ping-pong one-way latency %.2f us (round trip %.2f us); "
                    "1 MiB parts %.1f MiB/s (%d frames in %.3f s)\n",
                    rtt / 2, rtt, frames / secs, frames, secs);
    link.finalize();
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    ::alarm(120);  // a hang fails the test (SIGALRM ends the process)
    try {
        if (argc > 1 && std::strcmp(argv[1], "--bench") == 0) return run_bench();
        return run_conformance();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "rank %d: unexpected exception: %s\n", g_rank, e.what());
        return 1;
    }
}
