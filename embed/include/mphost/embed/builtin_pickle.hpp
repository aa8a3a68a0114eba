#pragma once
// A pickle codec for small graphs of exact builtin objects, for the hot path
// of queues.
//
// encode() writes pickle protocol 4 byte for byte as the C pickler
// (pickle.dumps(obj, 4), and so ForkingPickler, whose reducers never apply
// to these types) writes it, when every object of the graph is None, a bool,
// an int, a float, a str, bytes, or a tuple, list or dict of those (exact
// types, no subclasses). Identity is kept as the pickler keeps it: a str,
// bytes or container met twice is written once and fetched from the memo.
// Anything else (another type, a str that is not valid UTF-8, a graph too
// deep, too many memoized objects, more than one frame of output) makes it
// return false with nothing raised: the caller then uses the real pickler.
//
// decode() reads a pickle whose opcodes are among those encode() and the C
// pickler write for such graphs, and builds the same objects pickle.loads
// would. For anything else (other opcodes, damaged data, trailing bytes) it
// returns nullptr with no Python error set, and the caller hands the bytes to
// pickle.loads, which gives the authoritative result or error.
//
// Both run with the GIL held and call no Python code of their own (object
// allocation may still run the garbage collector). The opcodes themselves
// are the core's (runtime/pickle_writer.hpp, pickle_reader.hpp, shared with
// the C++ API's mphost::value): this layer only walks PyObjects.

#include <cstddef>
#include <span>
#include <string>

#include "mphost/embed/python.hpp"

namespace mphost::embed::builtin_pickle {

// Appends the pickle of `obj` to `out` (cleared first); false if `obj` is
// outside the supported graphs (then `out` holds garbage).
bool encode(PyObject* obj, std::string& out);

// The object pickled in `data`, or nullptr (no error set) when decode() does
// not handle it, for whatever reason (memory exhaustion included: the caller
// falls back to pickle.loads, which meets it again and raises it).
PyObject* decode(std::span<const std::byte> data);

}  // namespace mphost::embed::builtin_pickle
