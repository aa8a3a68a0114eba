// State bindings: the live state of a program tree (ipc/tree_state.hpp) as
// plain Python data, and the notes the shim adds to the tree's process
// table (ipc/process_table.hpp) and to its channels' headers.
//
// tree_state(pid=None) reads the registry of root `pid` (None: this
// process's tree) without the GIL; it never writes to, locks or waits on
// the target. The schema of its dict is stable (mphost.state(), the
// inspector's --json): keys are added, never renamed.
// The note calls never fail: without a registry they return False.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "mphost/embed/bindings.hpp"
#include "mphost/embed/gil.hpp"
#include "mphost/ipc/process_identity.hpp"
#include "mphost/ipc/process_table.hpp"
#include "mphost/ipc/tree_state.hpp"

namespace py = pybind11;

namespace mphost::embed {
namespace {

template <typename T>
py::object or_none(const std::optional<T>& value) {
  return value ? py::cast(*value) : py::none();
}

// A name as written by the program (UTF-8, perhaps cut mid-character).
py::object text_or_none(const std::string& text) {
  if (text.empty()) return py::none();
  PyObject* decoded = PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "replace");
  if (decoded == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(decoded);
}

py::object pid_or_none(pid_t pid) { return pid > 0 ? py::cast(pid) : py::none(); }

const char* state_word(const ipc::process_view& p) {
  if (p.record.state == ipc::process_state::exited) return "exited";
  if (!p.alive) return "gone";
  if (p.record.state == ipc::process_state::unknown) return "running";
  return ipc::to_string(p.record.state);
}

py::dict process_dict(const ipc::process_view& p) {
  py::dict d;
  const ipc::process_record& r = p.record;
  d["pid"] = r.pid;
  d["ppid"] = pid_or_none(r.ppid);
  d["name"] = text_or_none(r.name);
  d["role"] = r.role == ipc::process_role::unknown ? py::none() : py::cast(ipc::to_string(r.role));
  d["start_method"] = r.method == ipc::process_method::unknown ? py::none() : py::cast(ipc::to_string(r.method));
  d["state"] = state_word(p);
  d["exitcode"] = or_none(r.exit_code);
  d["cpu_seconds"] = p.cpu_seconds >= 0 ? py::cast(p.cpu_seconds) : py::none();
  d["rss_bytes"] = p.rss_bytes >= 0 ? py::cast(p.rss_bytes) : py::none();
  d["started_at"] = r.started_at_ns != 0 ? py::cast(static_cast<double>(r.started_at_ns) / 1e9) : py::none();
  d["alive"] = p.alive;
  d["os_state"] = p.os_state == '?' ? py::none() : py::cast(std::string(1, p.os_state));
  return d;
}

py::dict channel_dict(const ipc::channel_view& c) {
  py::dict d;
  d["name"] = c.name;
  d["kind"] = c.label.empty() ? std::string("channel") : c.label;
  d["label"] = c.label.empty() ? py::none() : py::cast(c.label);
  d["depth"] = c.depth;
  d["bytes_in_flight"] = c.bytes_in_flight;
  d["capacity"] = c.unbounded ? py::none() : py::cast(c.capacity);
  d["messages_total"] = c.messages_total;
  d["readers_waiting"] = c.readers_waiting;
  d["writers_waiting"] = c.writers_waiting;
  d["creator_pid"] = pid_or_none(c.creator_pid);
  d["unbounded"] = c.unbounded;
  d["ring_bytes"] = c.capacity;
  d["readers"] = c.readers;
  d["writers"] = c.writers;
  return d;
}

py::dict sync_dict(const ipc::sync_view& s) {
  py::dict d;
  d["name"] = s.name;
  d["kind"] = s.kind;
  d["value"] = or_none(s.value);
  d["maxvalue"] = or_none(s.maxvalue);
  d["holder_pid"] = or_none(s.holder_pid);
  d["holder_alive"] = s.holder_pid ? py::cast(ipc::process_is_alive(*s.holder_pid)) : py::none();
  d["waiters"] = or_none(s.waiters);
  d["creator_pid"] = pid_or_none(s.creator_pid);
  d["may_have_waiters"] = s.may_have_waiters;
  d["recursion"] = or_none(s.recursion);
  d["is_set"] = or_none(s.is_set);
  d["parties"] = or_none(s.parties);
  d["broken"] = or_none(s.broken);
  return d;
}

py::dict segment_dict(const ipc::segment_view& s) {
  py::dict d;
  d["name"] = s.name;
  d["size"] = s.size;
  d["mapped_by"] = py::cast(s.mapped_by);
  d["creator_pid"] = pid_or_none(s.creator_pid);
  return d;
}

py::dict snapshot_dict(const ipc::tree_snapshot& snap) {
  py::dict d;
  d["root"] = snap.root;
  d["registry"] = snap.registry;
  d["taken_at"] = snap.taken_at;
  d["root_alive"] = snap.root_alive;
  py::list processes, channels, locks, segments;
  for (const auto& p : snap.processes) processes.append(process_dict(p));
  for (const auto& c : snap.channels) channels.append(channel_dict(c));
  for (const auto& s : snap.syncs) locks.append(sync_dict(s));
  for (const auto& s : snap.segments) segments.append(segment_dict(s));
  d["processes"] = processes;
  d["channels"] = channels;
  d["locks"] = locks;
  d["segments"] = segments;
  py::dict spawn;
  spawn["forkserver_pid"] = pid_or_none(snap.forkserver_pid);
  spawn["forkserver_alive"] = snap.forkserver_pid > 0 ? py::cast(snap.forkserver_alive) : py::none();
  spawn["warm_spares"] = snap.warm_spares;
  d["spawn"] = spawn;
  d["untracked"] = snap.untracked;
  return d;
}

ipc::process_role role_arg(const std::optional<std::string>& role) {
  if (!role) return ipc::process_role::unknown;
  const ipc::process_role r = ipc::role_from_string(*role);
  if (r == ipc::process_role::unknown) throw py::value_error("unknown process role: " + *role);
  return r;
}

}  // namespace

void bind_state(py::module_& m) {
  m.def(
      "tree_state",
      [](std::optional<pid_t> pid) {
        const ipc::tree_snapshot snap = without_gil([&] { return ipc::take_tree_snapshot(pid.value_or(0)); });
        return snapshot_dict(snap);
      },
      py::arg("pid") = py::none(),
      "The live state of the program tree whose root is `pid` (None: this one), read-only, as a dict: "
      "root, registry, taken_at, processes, channels, locks, segments, spawn.");
  m.def(
      "tree_roots", [] { return without_gil([] { return ipc::running_tree_roots(); }); },
      "The root pids of the mphost programs of this user running now.");
  m.def(
      "state_note",
      [](pid_t pid, std::optional<std::string> name, std::optional<std::string> role, std::optional<pid_t> ppid,
         bool running) {
        const ipc::process_role r = role_arg(role);
        ipc::process_note note;
        note.pid = pid;
        note.ppid = ppid.value_or(0);
        note.role = r;
        if (name) note.name = *name;
        if (running) note.state = ipc::process_state::running;
        return ipc::note_process(note);
      },
      py::arg("pid"), py::arg("name") = py::none(), py::arg("role") = py::none(), py::arg("ppid") = py::none(),
      py::arg("running") = false,
      "Add what is known of process `pid` (its Python name, role, parent) to the tree's process table.");
  m.def(
      "state_note_self",
      [](const std::string& role, std::optional<std::string> name, std::optional<pid_t> ppid,
         std::optional<std::string> method) {
        const ipc::process_role r = role_arg(role);
        ipc::process_note note;
        note.pid = ipc::current_pid();
        note.ppid = ppid.value_or(0);
        note.start_time = ipc::process_identity::current().start_time;
        note.stamp_started_at = true;
        note.role = r;
        note.state = ipc::process_state::running;
        note.method = method ? ipc::method_from_string(*method) : ipc::process_method::unknown;
        if (name) note.name = *name;
        const bool noted = ipc::note_process(note);
        return noted;
      },
      py::arg("role"), py::arg("name") = py::none(), py::arg("ppid") = py::none(), py::arg("method") = py::none(),
      "This process notes itself in the tree's process table: running, with `role` (main, child, "
      "forkserver, warm_spare, manager_server, resource_tracker), its name, and its logical parent "
      "(None: leave what the parent noted).");
  m.def(
      "state_label_channel",
      [](const std::string& name, const std::string& label) { return ipc::label_channel(name, label); },
      py::arg("name"), py::arg("label"), "Name what channel `name` is for observers (\"Queue\", \"Pipe\", ...).");
}

}  // namespace mphost::embed
