#pragma once
// Handing a child its work over a Unix socket: one message of opaque bytes
// plus descriptors, each placed at a chosen number in the receiver.
//
// A spawned child blocks in receive_handover() until its parent has work
// for it, which may be long after it started (warm spawn). Descriptors
// travel as SCM_RIGHTS, so the child need not have inherited them at exec:
// the receiver dup2()s each one onto the number the sender chose (the number
// it had in the sender, so that pickled references to it stay valid), moving
// its own descriptors out of the way first. The placed descriptors are
// inheritable; everything else the receiver holds stays close-on-exec.
//
// Wire: header "MPHO" | u32 count | i32 targets[count] | u64 payload size,
// sent with the descriptors, then the payload bytes.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace mphost::runtime {

inline constexpr std::size_t handover_max_fds = 64;

struct fd_placement {
  int source;  // in the sender
  int target;  // number it gets in the receiver
};

// Sends one handover. Throws std::system_error (EPIPE when the child is gone).
void send_handover(int sock, std::span<const std::byte> payload, std::span<const fd_placement> fds);

// Receives one handover, places its descriptors and returns the payload.
// `sock` may be moved to another number if a target needs its slot: it is
// updated. Throws std::system_error: errc::peer_closed when the sender closed
// the socket without sending (the parent ended), errc::corrupt_frame for a
// malformed header.
std::vector<std::byte> receive_handover(int& sock);

}  // namespace mphost::runtime
