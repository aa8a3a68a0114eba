#pragma once
// One channel message made of several Python buffers, copied once each,
// straight into the channel: a pickle with its protocol 5 out-of-band
// buffers (numpy arrays, bytearrays...) travels without being joined into
// one bytes object first. A message above the channel's large threshold is
// written into a large block, which the receiver maps in place.
//
// `parts` is a list or tuple of C-contiguous bytes-like objects. Waiting for
// room (bounded channels only) releases the GIL, and so does a large copy;
// a signal that interrupts the wait runs the Python handlers. Returns 1 when
// sent, 0 when `until` passed first, -1 with a Python error set: a part that
// is not a buffer (TypeError), no reader left (BrokenPipeError), or the
// core's error as errors.hpp maps it.

#include "mphost/embed/python.hpp"
#include "mphost/ipc/deadline.hpp"

namespace mphost::ipc {
class channel;
}

namespace mphost::embed {

int send_gathered(ipc::channel& ch, PyObject* parts, const ipc::deadline& until);

}  // namespace mphost::embed
