// mphost::value <-> pickle protocol 4, over the core's writer and reader
// (runtime/pickle_writer.hpp, pickle_reader.hpp).
//
// Writing: a value is a tree, so nothing is memoized; a shared block is
// written as a call of mphost._shared.attach(name, format, count) and an
// opaque value as a call of pickle.loads(its bytes), both of which the
// standard unpickler performs in the worker.
// Reading: the builder makes values; the same two calls are recognised and
// turned back into a shared block and an opaque value, and float(x),
// int(x), bool(x) (how the worker writes numpy scalars) into plain values. Anything else the
// reader or the builder refuses makes the whole pickle one opaque value.
#include <optional>
#include <string>

#include "mphost/remote_error.hpp"
#include "mphost/runtime/pickle_reader.hpp"
#include "mphost/runtime/pickle_writer.hpp"
#include "mphost/value.hpp"
#include "value_codec.hpp"

namespace mphost {
namespace {

namespace pickle = runtime::pickle;

constexpr std::string_view shared_module = "mphost._shared";
constexpr std::string_view shared_attach = "attach";

class value_writer {
 public:
  explicit value_writer(std::string& out) : w_(out) {}

  void items(const std::vector<value>& vs) {
    for (const value& v : vs) put(v);
  }

  void put(const value& v) {
    std::visit([this](const auto& x) { emit(x); }, v.raw());
  }

  void tuple_of(const std::vector<value>& vs) {
    if (vs.empty()) {
      w_.empty_tuple();
      return;
    }
    if (vs.size() > 3) w_.mark();
    items(vs);
    w_.tuple(vs.size());
  }

  pickle::writer& raw() { return w_; }

 private:
  void emit(std::monostate) { w_.none(); }
  void emit(bool b) { w_.boolean(b); }
  void emit(std::int64_t i) { w_.integer(i); }
  void emit(double d) { w_.real(d); }
  void emit(const std::string& s) { w_.text(s); }
  void emit(const bytes& b) { w_.binary(b.data); }
  void emit(const tuple& t) { tuple_of(t.items); }
  void emit(const list& l) {
    w_.empty_list();
    for (std::size_t at = 0; at < l.size(); at += pickle::batch_size) {
      const std::size_t end = std::min(l.size(), at + pickle::batch_size);
      w_.mark();
      for (std::size_t i = at; i < end; ++i) put(l[i]);
      w_.appends();
    }
  }
  void emit(const dict& d) {
    w_.empty_dict();
    std::size_t in_batch = 0;
    for (const auto& [k, v] : d) {
      if (in_batch == 0) w_.mark();
      w_.text(k);
      put(v);
      if (++in_batch == pickle::batch_size) {
        w_.setitems();
        in_batch = 0;
      }
    }
    if (in_batch != 0) w_.setitems();
  }
  void emit(const shared_block& b) {
    w_.global(shared_module, shared_attach);
    const bool shaped = b.shape().size() != 1;
    if (shaped) w_.mark();  // four arguments: a tuple of more than three
    w_.text(b.name());
    w_.text(std::string(1, b.format()));
    w_.integer(static_cast<std::int64_t>(b.count()));
    if (!shaped) {
      w_.tuple(3);
    } else {
      // attach(name, format, count, shape): the shape as a tuple of ints.
      std::vector<value> extents;
      for (std::size_t e : b.shape()) extents.emplace_back(static_cast<std::int64_t>(e));
      tuple_of(extents);
      w_.tuple(4);
    }
    w_.reduce();
  }
  void emit(const pickled& p) {
    w_.global("pickle", "loads");
    w_.binary(p.data);
    w_.tuple(1);
    w_.reduce();
  }

  pickle::writer w_;
};

// The reader's handle: a value, a callable named by STACK_GLOBAL, or
// nothing (failure).
struct slot {
  std::optional<value> v;
  std::string callable;  // "module:name" for a global
};

struct value_builder {
  using value_type = mphost::value;
  using value = slot;
  bool int_too_big = false;

  static slot of(mphost::value v) { return slot{std::move(v), {}}; }
  static bool ok(const slot& s) { return s.v.has_value() || !s.callable.empty(); }
  static slot none() { return of(mphost::value()); }
  static slot boolean(bool b) { return of(b); }
  static slot integer(std::int64_t i) { return of(i); }
  slot big_integer(std::span<const unsigned char>) {
    int_too_big = true;
    return {};
  }
  static slot real(double d) { return of(d); }
  static slot text(std::string_view s) { return of(std::string(s)); }
  static slot binary(std::span<const std::byte> b) {
    return of(mphost::bytes{std::string(reinterpret_cast<const char*>(b.data()), b.size())});
  }
  static bool take(std::span<slot> items, std::vector<mphost::value>& out) {
    out.reserve(out.size() + items.size());
    for (slot& s : items) {
      if (!s.v) return false;
      out.push_back(std::move(*s.v));
    }
    return true;
  }
  static slot tuple(std::span<slot> items) {
    std::vector<mphost::value> vs;
    if (!take(items, vs)) return {};
    return of(mphost::tuple(std::move(vs)));
  }
  static slot list() { return of(mphost::list()); }
  static slot dict() { return of(mphost::dict()); }
  static bool extend(slot& l, std::span<slot> items) {
    if (!l.v || l.v->type() != mphost::value::kind::list) return false;
    auto& target = const_cast<mphost::list&>(l.v->as_list());
    return take(items, target);
  }
  static bool set_items(slot& d, std::span<slot> pairs) {
    if (!d.v || d.v->type() != mphost::value::kind::dict) return false;
    auto& target = const_cast<mphost::dict&>(d.v->as_dict());
    for (std::size_t i = 0; i < pairs.size(); i += 2) {
      if (!pairs[i].v || !pairs[i + 1].v || pairs[i].v->type() != mphost::value::kind::string) return false;
      target.insert_or_assign(pairs[i].v->as_string(), std::move(*pairs[i + 1].v));
    }
    return true;
  }
  static slot global_of(const slot& m, const slot& n) {
    if (!m.v || !n.v || m.v->type() != mphost::value::kind::string || n.v->type() != mphost::value::kind::string) return {};
    return slot{std::nullopt, m.v->as_string() + ":" + n.v->as_string()};
  }
  static slot call(slot& f, slot& args) {
    if (!args.v || args.v->type() != mphost::value::kind::tuple) return {};
    const auto& a = args.v->as_tuple();
    if (a.size() == 1 && (f.callable == "builtins:float" || f.callable == "builtins:int" || f.callable == "builtins:bool")) {
      // A numpy scalar, as the worker's pickler writes it (mphost._worker).
      const auto k = a[0].type();
      if (f.callable == "builtins:float" && (k == mphost::value::kind::real || k == mphost::value::kind::integer)) {
        return of(a[0].as_double());
      }
      if (f.callable == "builtins:int" && k == mphost::value::kind::integer) return of(a[0]);
      if (f.callable == "builtins:bool" && k == mphost::value::kind::boolean) return of(a[0]);
      return {};
    }
    if (f.callable == "pickle:loads" && a.size() == 1 && a[0].type() == mphost::value::kind::bytes) {
      return of(mphost::pickled{a[0].as_bytes()});
    }
    if (f.callable == std::string(shared_module) + ":" + std::string(shared_attach) &&
        (a.size() == 3 || a.size() == 4) && a[0].type() == mphost::value::kind::string &&
        a[1].type() == mphost::value::kind::string && a[1].as_string().size() == 1 &&
        a[2].type() == mphost::value::kind::integer && a[2].as_int() >= 0) {
      std::vector<std::size_t> shape;
      if (a.size() == 4) {
        if (a[3].type() != mphost::value::kind::tuple) return {};
        for (const mphost::value& e : a[3].as_tuple()) {
          if (e.type() != mphost::value::kind::integer || e.as_int() < 0) return {};
          shape.push_back(static_cast<std::size_t>(e.as_int()));
        }
        if (shape.empty()) shape = {1};  // a 0-d result: one item
      }
      return of(shared_block::adopt(a[0].as_string(), a[1].as_string()[0], static_cast<std::size_t>(a[2].as_int()),
                                    std::move(shape)));
    }
    return {};
  }
  static slot share(const slot& s) { return s; }
  static void drop(slot&) noexcept {}
};

}  // namespace

void write_pickle(const value& v, std::string& out) {
  value_writer w(out);
  w.raw().start();
  w.put(v);
  w.raw().finish();
}

void write_call(std::string_view target, const std::vector<value>& args, std::string& out) {
  value_writer w(out);
  w.raw().start();
  w.raw().text(target);
  w.tuple_of(args);
  w.raw().tuple(2);
  w.raw().finish();
}

value read_pickle(std::span<const std::byte> data) {
  value_builder builder;
  pickle::reader<value_builder> reader(builder);
  slot out;
  if (reader.read(data, out) && out.v) return std::move(*out.v);
  if (builder.int_too_big) throw conversion_error("Python int too large to convert to int64");
  return value(pickled{std::string(reinterpret_cast<const char*>(data.data()), data.size())});
}

std::string to_pickle(const value& v) {
  std::string out;
  write_pickle(v, out);
  return out;
}

value from_pickle(std::string_view data) { return read_pickle(std::as_bytes(std::span(data.data(), data.size()))); }

}  // namespace mphost
