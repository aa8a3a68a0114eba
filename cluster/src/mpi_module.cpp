// _mphost_mpi: the Python face of mpi_link (a loadable extension module; the
// launcher never links it). No call blocks but finalize(), which releases the
// GIL while the progress thread drains.
//
// Ownership: send() holds each part as a Py_buffer (PyBUF_SIMPLE) keyed by the
// frame's ticket; every send()/receive()/pending() first releases, with the
// GIL, the buffers of the frames the thread finished sending. finalize() and
// the module's teardown release the rest. A received header or part is a
// Block: a writable 1-D buffer of unsigned bytes that owns its memory.
#include "mphost/cluster/mpi_link.hpp"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <unordered_map>
#include <utility>
#include <vector>

namespace py = pybind11;
using mphost::cluster::block;
using mphost::cluster::mpi_link;
using mphost::cluster::part_view;

namespace {

// Py_buffers held for one frame; released on destruction (GIL held).
class held_buffers {
public:
    held_buffers() = default;
    held_buffers(held_buffers&& other) noexcept : views_(std::move(other.views_)) { other.views_.clear(); }
    held_buffers& operator=(held_buffers&&) = delete;
    ~held_buffers() { release(); }

    void reserve(std::size_t n) { views_.reserve(n); }
    // Exports obj's bytes; a buffer that is not contiguous raises BufferError.
    const Py_buffer& acquire(PyObject* obj) {
        views_.emplace_back();
        if (PyObject_GetBuffer(obj, &views_.back(), PyBUF_SIMPLE) != 0) {
            views_.pop_back();
            if (PyErr_ExceptionMatches(PyExc_ValueError) && PyObject_CheckBuffer(obj)) {
                // numpy reports a non-contiguous array as ValueError.
                PyObject *type, *value, *trace;
                PyErr_Fetch(&type, &value, &trace);
                PyErr_Format(PyExc_BufferError, "%S", value ? value : Py_None);
                Py_XDECREF(type);
                Py_XDECREF(value);
                Py_XDECREF(trace);
            }
            throw py::error_already_set();
        }
        return views_.back();
    }
    void release() {
        for (auto& v : views_) PyBuffer_Release(&v);
        views_.clear();
    }

private:
    std::vector<Py_buffer> views_;
};

struct module_state {
    mpi_link link;
    std::unordered_map<std::uint64_t, held_buffers> held;
    bool started = false;
};

module_state* state_ = nullptr;

module_state& st() {
    if (!state_) throw std::logic_error("the MPI link is not running");
    return *state_;
}

void release_sent(module_state& s) {
    for (std::uint64_t ticket : s.link.take_sent()) s.held.erase(ticket);
}

void require_started(const module_state& s) {
    if (!s.started) throw std::logic_error("the MPI link is not running");
}

int small_int(const py::handle& value, const char* what) {
    py::int_ index = py::reinterpret_steal<py::int_>(PyNumber_Index(value.ptr()));
    if (!index) throw py::error_already_set();
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
    if (overflow || v < INT_MIN || v > INT_MAX)
        throw std::invalid_argument(std::string(what) + " out of range");
    return static_cast<int>(v);
}

void send(py::handle dest, py::handle kind, py::handle header, py::handle parts) {
    module_state& s = st();
    if (!s.link.running()) throw std::logic_error("the MPI link is not running");
    release_sent(s);
    int d = small_int(dest, "dest");
    int k = small_int(kind, "kind");
    py::object seq = py::reinterpret_steal<py::object>(PySequence_Fast(parts.ptr(), "parts must be a sequence"));
    if (!seq) throw py::error_already_set();
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq.ptr());
    PyObject** items = PySequence_Fast_ITEMS(seq.ptr());
    held_buffers hold;
    hold.reserve(static_cast<std::size_t>(n));
    std::vector<part_view> views;
    views.reserve(static_cast<std::size_t>(n));
    for (Py_ssize_t i = 0; i < n; ++i) {
        const Py_buffer& v = hold.acquire(items[i]);
        views.push_back({v.buf, static_cast<std::size_t>(v.len)});
    }
    held_buffers head;
    const Py_buffer& hv = head.acquire(header.ptr());
    std::uint64_t ticket = s.link.send(d, k, hv.buf, static_cast<std::size_t>(hv.len), std::move(views));
    if (n) s.held.emplace(ticket, std::move(hold));
}

py::object receive() {
    module_state& s = st();
    if (!s.link.running()) throw std::logic_error("the MPI link is not running");
    release_sent(s);
    auto f = s.link.receive();
    if (!f) return py::none();
    py::list parts;
    for (block& b : f->parts) parts.append(py::cast(std::move(b)));
    return py::make_tuple(f->source, f->kind, py::cast(std::move(f->header)), std::move(parts));
}

std::size_t pending() {
    module_state& s = st();
    if (!s.link.running()) throw std::logic_error("the MPI link is not running");
    release_sent(s);
    return s.link.pending();
}

void finalize_link(module_state& s, bool release_gil) {
    if (s.link.running()) {
        if (release_gil) {
            py::gil_scoped_release nogil;
            s.link.finalize();
        } else {
            s.link.finalize();
        }
    }
    s.held.clear();
}

}  // namespace

PYBIND11_MODULE(_mphost_mpi, m) {
    m.doc() = "mphost's MPI link: frames between ranks, moved by a progress thread";
    state_ = new module_state();
    // Teardown: finalize a link still running and release what it holds.
    m.add_object("_teardown", py::capsule(state_, [](void* p) {
                     auto* s = static_cast<module_state*>(p);
                     try {
                         finalize_link(*s, false);
                     } catch (...) {
                     }
                     if (state_ == s) state_ = nullptr;
                     delete s;
                 }));

    py::class_<block>(m, "Block", py::buffer_protocol())
        .def_buffer([](block& b) {
            return py::buffer_info(b.data(), 1, py::format_descriptor<unsigned char>::format(), 1,
                                   {static_cast<py::ssize_t>(b.size())}, {1}, false);
        })
        .def("__len__", &block::size)
        .def("__repr__", [](const block& b) { return "<Block of " + std::to_string(b.size()) + " bytes>"; });

    m.def("init", [] {
        module_state& s = st();
        s.link.init();
        s.started = true;
    }, "Start MPI and the progress thread (idempotent).");
    m.def("rank", [] { require_started(st()); return st().link.rank(); });
    m.def("size", [] { require_started(st()); return st().link.size(); });
    m.def("host", [] { require_started(st()); return st().link.host(); });
    m.def("fileno", [] {
        module_state& s = st();
        if (!s.link.running()) throw std::logic_error("the MPI link is not running");
        return s.link.fileno();
    }, "The eventfd that is readable while received frames wait.");
    m.def("send", &send, py::arg("dest"), py::arg("kind"), py::arg("header"), py::arg("parts"),
          "Queue a frame; each part is held until it was sent.");
    m.def("receive", &receive, "Take one received frame, or None; never blocks.");
    m.def("pending", &pending, "Frames queued or in flight outbound.");
    m.def("finalize", [] { if (state_) finalize_link(*state_, true); },
          "Let queued sends complete (at most 10 s), stop the thread, MPI_Finalize.");
    m.def("abort", [](int code) { st().link.abort(code); }, py::arg("code"),
          "MPI_Abort(MPI_COMM_WORLD, code): ends every rank of the job.");
}
