// mphost::value's accessors and comparison (value.hpp).
#include "mphost/value.hpp"

#include "mphost/remote_error.hpp"

namespace mphost {

namespace {

const char* const kind_names[] = {"NoneType", "bool", "int", "float", "str", "bytes",
                                  "list", "tuple", "dict", "shared_array", "pickled object"};

template <class T>
const T& expect(const value& v, const char* wanted) {
  if (const T* p = std::get_if<T>(&v.raw())) return *p;
  throw conversion_error(std::string("mphost::value: expected ") + wanted + ", got " + v.type_name());
}

}  // namespace

tuple::tuple(std::initializer_list<value> v) : items(v) {}
bool operator==(const tuple& a, const tuple& b) { return a.items == b.items; }

const char* value::type_name() const noexcept { return kind_names[v_.index()]; }

bool value::as_bool() const { return expect<bool>(*this, "bool"); }
std::int64_t value::as_int() const { return expect<std::int64_t>(*this, "int"); }
double value::as_double() const {
  if (const auto* i = std::get_if<std::int64_t>(&v_)) return static_cast<double>(*i);
  return expect<double>(*this, "float");
}
const std::string& value::as_string() const { return expect<std::string>(*this, "str"); }
const std::string& value::as_bytes() const { return expect<mphost::bytes>(*this, "bytes").data; }
const list& value::as_list() const { return expect<mphost::list>(*this, "list"); }
const std::vector<value>& value::as_tuple() const { return expect<mphost::tuple>(*this, "tuple").items; }
const dict& value::as_dict() const { return expect<mphost::dict>(*this, "dict"); }
const std::string& value::as_pickled() const { return expect<mphost::pickled>(*this, "pickled object").data; }
const shared_block& value::as_block() const { return expect<shared_block>(*this, "shared_array"); }

std::size_t value::size() const {
  switch (type()) {
    case kind::list: return as_list().size();
    case kind::tuple: return as_tuple().size();
    case kind::dict: return as_dict().size();
    default: throw conversion_error(std::string("mphost::value: ") + type_name() + " has no size");
  }
}

const value& value::operator[](std::size_t i) const {
  const std::vector<value>& items = type() == kind::tuple ? as_tuple() : as_list();
  if (i >= items.size()) throw std::out_of_range("mphost::value: index out of range");
  return items[i];
}

const value& value::operator[](const std::string& key) const {
  const dict& d = as_dict();
  const auto it = d.find(key);
  if (it == d.end()) throw std::out_of_range("mphost::value: no key '" + key + "'");
  return it->second;
}

bool operator==(const value& a, const value& b) {
  if (a.v_.index() != b.v_.index()) return false;
  return a.v_ == b.v_;
}

}  // namespace mphost
