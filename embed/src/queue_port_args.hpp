#pragma once
// The arguments of `_mphost.QueuePort`'s put and get (queue_port.hpp),
// read from a vectorcall.

#include "mphost/embed/python.hpp"

#include "mphost/ipc/deadline.hpp"

namespace mphost::embed {

// Positional-or-keyword (block, timeout) after `skip` leading positional
// arguments, or (`simple`) nothing after them. `block` and `timeout` are
// borrowed, nullptr where not given; false with TypeError on anything else.
bool parse_block_timeout(const char* fn, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames, Py_ssize_t skip,
                         bool simple, PyObject*& block, PyObject*& timeout);

// The deadline `timeout` seconds from now (infinite for nullptr or None);
// `ok` false with TypeError or ValueError (NaN) set otherwise.
ipc::deadline deadline_from(PyObject* timeout, bool& ok);

}  // namespace mphost::embed
