#pragma once
// Sending one message on a channel from a Python thread: the one place that
// waits for room, releases the GIL and turns the outcome into Python's terms,
// for the Channel binding and the Queue port alike.
//
// send_message sends `bytes`. send_gathered sends the concatenation of
// `parts`, a list or tuple of C-contiguous bytes-like objects, each copied
// once straight into the channel: a pickle with its protocol 5 out-of-band
// buffers (numpy arrays, bytearrays...) travels without being joined into
// one bytes object first. A message above the channel's large threshold is
// written into a large block, which the receiver maps in place.
//
// The wait is blocking_call's (blocking_call.hpp): a first attempt with the
// GIL (the common case needs no wait), except for a message large enough
// that its copy is worth releasing the GIL for; waiting for room (bounded
// channels only) releases it; a signal that interrupts the wait runs the
// Python handlers, and the wait goes on unless they raised. Returns 1 when sent, 0 when `until` passed first, -1
// with a Python error set: a part that is not a buffer (TypeError), no
// reader left (BrokenPipeError), or the core's error as errors.hpp maps it.
// When sent, `*sent` (if given) is the message's identity (channel.hpp).

#include <cstdint>
#include <span>

#include "mphost/embed/python.hpp"
#include "mphost/ipc/deadline.hpp"

namespace mphost::ipc {
class channel;
}

namespace mphost::embed {

// Tells the core, once per thread, whether the calling Python thread is a
// daemon thread: such a thread's calls that are waiting when its process
// starts exiting never return (ipc::park_waiting_calls_at_exit), as it would
// stay blocked on a pipe, instead of coming back into a program being torn
// down. Every blocking channel call of the bindings makes it first. GIL held.
void note_calling_thread() noexcept;

int send_message(ipc::channel& ch, std::span<const std::byte> bytes, const ipc::deadline& until,
                 std::uint64_t* sent = nullptr);
int send_gathered(ipc::channel& ch, PyObject* parts, const ipc::deadline& until, std::uint64_t* sent = nullptr);

}  // namespace mphost::embed
