#pragma once
// `_mphost.QueuePort`: put and get of the shim's queues in one native call
// each, over the queue's channel and (for Queue) its slot semaphore.
//
//   QueuePort(queue, writer, reader, semlock, dumps, loads, *, tasks=None,
//             simple=False, feeder=False, keep=None)
//     writer, reader: `_mphost.Channel` handles or None (that call then
//     raises OSError); semlock: the slot semaphore, or None for a queue
//     without slots; tasks: a semaphore released once per item sent
//     (JoinableQueue's unfinished tasks), or None; simple: SimpleQueue's
//     calls (below); feeder: put() hands each item, once its slot is
//     taken and it is counted, to queue._to_feeder(obj) (a feeder thread's
//     buffer) instead of pickling and sending it; keep: held as long as the
//     port (the queue's connections, whose collection closes the channel:
//     a bound put or get outlives a queue collected under it).
//   put(obj, block=True, timeout=None)  ValueError once closed; takes a slot
//       of the semaphore (queue.Full when that fails); pickles obj (the
//       builtin codec when the graph allows, else the shim's dumps, so
//       reducers apply); counts a task; sends the bytes. An item that cannot
//       be pickled gives its slot back and is reported through the queue's
//       _on_queue_feeder_error(e, obj), with e as the exception being
//       handled.
//   get(block=True, timeout=None)  ValueError once closed; receives one
//       message (queue.Empty on timeout, EOFError when no writer is left);
//       gives a slot back; unpickles (the builtin codec, else loads).
//   With simple=True: put(obj) and get() take no other argument, get()
//       waits without limit, and a pickling error is raised to put's
//       caller; nothing else is reported.
//   dumps(obj)  the pickle put() would send, as bytes.
//   close()  later puts and gets raise ValueError.
// The channel takes whole messages from any number of writers and hands
// each to exactly one reader, so no lock is taken around either call. A
// closed channel handle raises OSError('handle is closed'), also in a
// thread blocked in get() when another closes it.
// A blocking wait releases the GIL; a signal that interrupts it runs the
// Python handlers, and the wait goes on unless they raised.
//
// The port holds the queue weakly (for its repr and its error hook), the
// channel handles, `keep`, the semaphores' methods and the two pickling
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

// Adds `_pickle_builtin(obj)` (the builtin codec's pickle, or None outside
// its graphs) and `_unpickle_builtin(data)` (ValueError where it defers to
// pickle.loads) to `module`, for tests (queue_codec_hooks.cpp).
bool add_codec_hooks(PyObject* module);

// The endpoint behind an `_mphost.Channel` object (defined with the
// binding, in channel_binding.cpp): it lives as long as that object, and is
// empty once the handle is closed. nullptr with TypeError for other objects.
ipc::channel* channel_of(PyObject* handle);

// A received large block as an `_mphost.Block` (a writable buffer over its
// mapping, which lives as long as the object or any view of it). New
// reference, or nullptr with a Python error set.
PyObject* block_object(ipc::large_block block);

}  // namespace mphost::embed
