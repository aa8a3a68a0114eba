// Fuzz target: the builtin pickle codec's decoder.
//
// The embed decoder (embed/src/builtin_pickle_decode.cpp) is
// runtime::pickle::reader driven by a builder of PyObject*: it cannot run
// without an interpreter, so this target runs the same reader with a builder
// that behaves as that one does, object for object (the same kinds, the
// same refusals: a global or a call is left to pickle.loads, APPEND only on
// a list, SETITEM only on a dict), over objects with reference counts that
// are checked as CPython would need them to be. Properties: no byte of input
// makes the reader touch memory it should not (ASan); no handle is dropped
// twice or used after its last drop; when read() returns, every object still
// alive is held by the result's graph and nothing else (no leaked
// reference), and after a refusal nothing is alive at all.
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.hpp"
#include "mphost/runtime/pickle_reader.hpp"

namespace {

using mphost::fuzz::require;

enum class kind { none, boolean, integer, big, real, text, binary, tuple, list, dict };

struct object {
  kind k;
  std::size_t id = 0;  // index in heap::all
  long refs = 1;
  std::vector<object*> items;  // owned references (tuple, list; dict: key, value, ...)
  std::string bytes;
};

// Every object made during one read, so that the checks can walk them all.
struct heap {
  std::vector<std::unique_ptr<object>> all;

  object* make(kind k) {
    all.push_back(std::make_unique<object>());
    all.back()->k = k;
    all.back()->id = all.size() - 1;
    return all.back().get();
  }
  static object* use(object* o) {
    require(o != nullptr && o->refs > 0, "a handle used after its last reference went");
    return o;
  }
  void decref(object* o) {
    use(o);
    if (--o->refs == 0) {
      for (object* item : o->items) decref(item);
      o->items.clear();
    }
  }
};

// The object builder of builtin_pickle_decode.cpp, over `heap` objects.
struct counted_builder {
  using value = object*;
  heap& h;

  static bool ok(object* v) noexcept { return v != nullptr; }
  object* none() { return h.make(kind::none); }
  object* boolean(bool v) {
    object* o = h.make(kind::boolean);
    o->bytes = v ? "1" : "0";
    return o;
  }
  object* integer(std::int64_t v) {
    object* o = h.make(kind::integer);
    o->bytes = std::to_string(v);
    return o;
  }
  object* big_integer(std::span<const unsigned char> le) {
    require(le.size() > 8, "big_integer for a value that fits 64 bits");
    object* o = h.make(kind::big);
    o->bytes.assign(reinterpret_cast<const char*>(le.data()), le.size());
    return o;
  }
  object* real(double) { return h.make(kind::real); }
  object* text(std::string_view s) {
    object* o = h.make(kind::text);
    o->bytes.assign(s);
    return o;
  }
  object* binary(std::span<const std::byte> b) {
    object* o = h.make(kind::binary);
    o->bytes.assign(reinterpret_cast<const char*>(b.data()), b.size());
    return o;
  }
  object* tuple(std::span<object*> items) {
    object* t = h.make(kind::tuple);
    for (object* item : items) t->items.push_back(heap::use(item));  // the references move in
    return t;
  }
  object* list() { return h.make(kind::list); }
  object* dict() { return h.make(kind::dict); }
  bool extend(object* list, std::span<object*> items) {
    heap::use(list);
    const bool done = list->k == kind::list;
    for (object* item : items) {
      heap::use(item);
      if (done) {
        list->items.push_back(item);
        ++item->refs;  // PyList_Append takes its own reference...
      }
      h.decref(item);  // ...and the builder lets go of the one it was given
    }
    return done;
  }
  bool set_items(object* dict, std::span<object*> pairs) {
    heap::use(dict);
    require(pairs.size() % 2 == 0, "set_items with an odd count");
    const bool done = dict->k == kind::dict;
    for (object* item : pairs) {
      heap::use(item);
      if (done) {
        dict->items.push_back(item);
        ++item->refs;
      }
      h.decref(item);
    }
    return done;
  }
  object* global_of(object* module, object* name) {
    heap::use(module);
    heap::use(name);
    return nullptr;
  }
  object* call(object* callable, object* args) {
    h.decref(callable);
    h.decref(args);
    return nullptr;
  }
  object* share(object* v) {
    ++heap::use(v)->refs;
    return v;
  }
  void drop(object* v) { h.decref(v); }
};

// After a read: the references each live object holds must all come from
// other live objects, except one for the result.
void check_ownership(const heap& h, object* result) {
  std::vector<long> held(h.all.size(), 0);
  for (const auto& o : h.all) {
    require(o->refs >= 0, "a negative reference count");
    if (o->refs == 0) continue;
    for (const object* item : o->items) {
      require(item->refs > 0, "a live container holds a dead item");
      require(item->id < h.all.size() && h.all[item->id].get() == item, "an item the builder never made");
      ++held[item->id];
    }
  }
  for (std::size_t i = 0; i < h.all.size(); ++i) {
    const object* o = h.all[i].get();
    const long expected = held[i] + (o == result ? 1 : 0);
    require(o->refs == expected, result ? "a reference leaked or was lost in a successful read"
                                        : "a refused read left objects alive");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* in, std::size_t size) {
  heap h;
  counted_builder b{h};
  object* out = nullptr;
  bool done = false;
  {
    mphost::runtime::pickle::reader<counted_builder> r(b);
    done = r.read(std::as_bytes(std::span(in, size)), out);
  }
  require(done == (out != nullptr), "read() answer and result disagree");
  check_ownership(h, out);
  if (out != nullptr) {
    b.drop(out);
    // Containers that hold themselves (a list appended to itself through the
    // memo) stay alive as cycles, as CPython's collector would find them.
  }
  return 0;
}
