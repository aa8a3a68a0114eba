#pragma once
// `_mphost.QueuePort`: Queue.put and Queue.get of the shim in one native
// call each, over the queue's channel and its slot semaphore.
//
//   put(obj, block=True, timeout=None)  ValueError once closed; takes a slot
//       of the semaphore (queue.Full when that fails); pickles obj (the
//       builtin codec when the graph allows, else the shim's dumps, so
//       reducers apply); sends the bytes. An item that cannot be pickled
//       gives its slot back and is reported through the queue's
//       _on_queue_feeder_error(e, obj), with e as the exception being handled.
//   get(block=True, timeout=None)  ValueError once closed; receives one
//       message (queue.Empty on timeout, EOFError when no writer is left);
//       gives a slot back; unpickles (the builtin codec, else loads).
//   dumps(obj)  the pickle put() would send, as bytes.
//   close()  later puts and gets raise ValueError.
// A blocking wait releases the GIL; a signal that interrupts it runs the
// Python handlers, and the wait goes on unless they raised.
//
// The port holds the queue weakly (for its repr and its error hook), the
// channel handles, the semaphore's acquire/release and the two pickling
// callables strongly.

#include "mphost/embed/python.hpp"

#include "mphost/ipc/large_block.hpp"

namespace mphost::ipc {
class channel;
}

namespace mphost::embed {

// Adds the QueuePort type to `module`; false with a Python error set on
// failure.
bool add_queue_port(PyObject* module);

// The endpoint behind an `_mphost.Channel` object (defined with the
// binding, in channel_binding.cpp): it lives as long as that object, and is
// empty once the handle is closed. nullptr with TypeError for other objects.
ipc::channel* channel_of(PyObject* handle);

// A received large block as an `_mphost.Block` (a writable buffer over its
// mapping, which lives as long as the object or any view of it). New
// reference, or nullptr with a Python error set.
PyObject* block_object(ipc::large_block block);

}  // namespace mphost::embed
