// Registry bindings: the registrations of the program tree's resource
// registry, under the shim's resource_tracker. Every call works on the
// process's current registry (ipc::current_registry); without one, the
// calls that record say so by returning False and the others find nothing.
// Nothing here blocks: a call is a probe over at most 64 slots or a scan of
// the pages ever written.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "mphost/embed/bindings.hpp"
#include "mphost/ipc/resource_registry.hpp"

namespace py = pybind11;

namespace mphost::embed {

void bind_registry(py::module_& m) {
  m.def("registry_member_token", [] { return ipc::registry_member_token(); },
        "A descriptor that keeps the current registry from being swept while any process holds it, to "
        "pass to the tracker process; never close it here. -1 without a registry.");
  m.def("registry_adopt", [](const std::string& name) { return ipc::adopt_registry(name); }, py::arg("name"),
        "Make registry `name` the current one, even if its owner is dead. False if it cannot be opened.");
  m.def(
      "registry_add",
      [](const std::string& rtype, const std::string& name, std::uint64_t watcher) {
        ipc::resource_registry* r = ipc::registry_for_new_name();
        return r != nullptr && r->add_registration(rtype, name, watcher);
      },
      py::arg("rtype"), py::arg("name"), py::arg("watcher"),
      "Record that resource `name` of type `rtype` is to be removed at the tree's end, on behalf of "
      "`watcher`. False when there is no registry or the registration cannot be kept.");
  m.def(
      "registry_drop",
      [](const std::string& rtype, const std::string& name) -> std::size_t {
        ipc::resource_registry* r = ipc::current_registry();
        return r != nullptr ? r->drop_registration(rtype, name) : 0;
      },
      py::arg("rtype"), py::arg("name"), "Forget (rtype, name), whichever watcher it belonged to; how many went.");
  m.def(
      "registry_entries",
      [](std::optional<std::uint64_t> watcher) {
        py::list out;
        ipc::resource_registry* r = ipc::current_registry();
        if (r == nullptr) return out;
        for (const auto& e : r->registrations()) {
          if (!watcher || e.watcher == *watcher) out.append(py::make_tuple(e.rtype, e.name));
        }
        return out;
      },
      py::arg("watcher") = py::none(),
      "The (rtype, name) pairs registered now: those of `watcher`, or all of them.");
  m.def(
      "registry_move",
      [](std::uint64_t from, std::uint64_t to) -> std::size_t {
        ipc::resource_registry* r = ipc::current_registry();
        return r != nullptr ? r->move_registrations(from, to) : 0;
      },
      py::arg("source"), py::arg("target"), "Give the registrations of watcher `source` to `target`; how many.");
  m.def(
      "registry_remove",
      [](const std::string& rtype, const std::string& name) { return ipc::remove_registered(rtype, name); },
      py::arg("rtype"), py::arg("name"),
      "Remove what a registration names, the core's way for its type: 0 or an errno value.");
  m.def("registry_finish_abandoned", &ipc::finish_abandoned_registry,
        "If the root of this tree is dead and no other process is a member of its registry, remove "
        "the registry with everything it records. True if it did.");
  m.def("registry_name", []() -> std::optional<std::string> {
    ipc::resource_registry* r = ipc::current_registry();
    if (r == nullptr) return std::nullopt;
    return r->name();
  });
}

}  // namespace mphost::embed
