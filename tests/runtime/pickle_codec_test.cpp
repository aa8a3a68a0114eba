// The core's pickle writer and reader (runtime/pickle_writer.hpp,
// pickle_reader.hpp), without Python: the writer's bytes are compared with
// what CPython's C pickler writes for the same values (pickle.dumps(v, 4),
// recorded here), and the reader reads them back into a small tree.
// GCC 12 warns falsely about std::string concatenation inlined here.
#pragma GCC diagnostic ignored "-Wrestrict"

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mphost/runtime/pickle_reader.hpp"
#include "mphost/runtime/pickle_writer.hpp"

namespace pickle = mphost::runtime::pickle;

namespace {

std::string hex(const std::string& s) {
  static const char* digits = "0123456789abcdef";
  std::string h;
  for (unsigned char c : s) {
    h.push_back(digits[c >> 4]);
    h.push_back(digits[c & 15]);
  }
  return h;
}

template <class F>
std::string written(F&& emit) {
  std::string out;
  pickle::writer w(out);
  w.start();
  emit(w);
  w.finish();
  return hex(out);
}

// A tree the test builder makes: a printable rendering of what was read.
struct node {
  std::string text;
};
using handle = std::shared_ptr<node>;

struct render_builder {
  using value = handle;
  int dropped = 0;
  static handle make(std::string s) { return std::make_shared<node>(node{std::move(s)}); }
  bool ok(const handle& v) const { return v != nullptr; }
  handle none() { return make("None"); }
  handle boolean(bool v) { return make(v ? "True" : "False"); }
  handle integer(std::int64_t v) { return make(std::to_string(v)); }
  handle big_integer(std::span<const unsigned char> b) { return make("big" + std::to_string(b.size())); }
  handle real(double v) { return make(std::to_string(v)); }
  handle text(std::string_view s) { return make("'" + std::string(s) + "'"); }
  handle binary(std::span<const std::byte> b) { return make("b" + std::to_string(b.size())); }
  handle tuple(std::span<handle> items) { return make("(" + join(items) + ")"); }
  handle list() { return make("["); }
  handle dict() { return make("{"); }
  bool extend(handle& list, std::span<handle> items) {
    if (list->text[0] != '[') return false;
    list->text += (list->text.size() > 1 ? "," : "") + join(items);
    return true;
  }
  bool set_items(handle& dict, std::span<handle> pairs) {
    if (dict->text[0] != '{') return false;
    for (std::size_t i = 0; i < pairs.size(); i += 2) {
      dict->text += (dict->text.size() > 1 ? "," : "") + pairs[i]->text + ":" + pairs[i + 1]->text;
    }
    return true;
  }
  handle global_of(const handle& m, const handle& n) { return make(m->text + "." + n->text); }
  handle call(handle& f, handle& args) { return make(f->text + args->text); }
  handle share(const handle& v) { return v; }
  void drop(handle&) { ++dropped; }
  static std::string join(std::span<handle> items) {
    std::string s;
    for (std::size_t i = 0; i < items.size(); ++i) s += (i ? "," : "") + items[i]->text;
    return s;
  }
};

std::string read_back(const std::string& hex_bytes, bool* done = nullptr) {
  std::string raw;
  for (std::size_t i = 0; i + 1 < hex_bytes.size(); i += 2) raw.push_back(static_cast<char>(std::stoi(hex_bytes.substr(i, 2), nullptr, 16)));
  render_builder b;
  pickle::reader<render_builder> r(b);
  handle out;
  const bool ok = r.read(std::as_bytes(std::span(raw.data(), raw.size())), out);
  if (done != nullptr) *done = ok;
  return ok ? out->text : "<refused>";
}

}  // namespace

TEST(PickleWriter, ScalarsAsTheCPickler) {
  EXPECT_EQ(written([](auto& w) { w.none(); }), "80044e2e");
  EXPECT_EQ(written([](auto& w) { w.boolean(true); }), "8004882e");
  EXPECT_EQ(written([](auto& w) { w.integer(5); }), "80044b052e");
  EXPECT_EQ(written([](auto& w) { w.integer(300); }), "80049504000000000000004d2c012e");
  EXPECT_EQ(written([](auto& w) { w.integer(70000); }), "80049506000000000000004a701101002e");
  EXPECT_EQ(written([](auto& w) { w.integer(-1); }), "80049506000000000000004affffffff2e");
  EXPECT_EQ(written([](auto& w) { w.integer(2147483648LL); }), "80049508000000000000008a0500000080002e");
  EXPECT_EQ(written([](auto& w) { w.integer(-2147483649LL); }), "80049508000000000000008a05ffffff7fff2e");
  EXPECT_EQ(written([](auto& w) { w.integer(INT64_MIN); }), "8004950b000000000000008a0800000000000000802e");
  EXPECT_EQ(written([](auto& w) { w.integer(INT64_MAX); }), "8004950b000000000000008a08ffffffffffffff7f2e");
  EXPECT_EQ(written([](auto& w) { w.real(1.5); }), "8004950a00000000000000473ff80000000000002e");
  EXPECT_EQ(written([](auto& w) { w.text("h\xc3\xa9"); w.memoize(); }), "80049507000000000000008c0368c3a9942e");
  EXPECT_EQ(written([](auto& w) { w.binary("ab"); w.memoize(); }), "800495060000000000000043026162942e");
}

TEST(PickleWriter, ContainersAsTheCPickler) {
  EXPECT_EQ(written([](auto& w) { w.empty_tuple(); }), "8004292e");
  EXPECT_EQ(written([](auto& w) { w.integer(1); w.tuple(1); w.memoize(); }), "80049505000000000000004b0185942e");
  EXPECT_EQ(written([](auto& w) {
              w.mark();
              for (int i = 1; i <= 4; ++i) w.integer(i);
              w.tuple(4);
              w.memoize();
            }),
            "8004950c00000000000000284b014b024b034b0474942e");
  EXPECT_EQ(written([](auto& w) {
              w.empty_list();
              w.memoize();
              w.mark();
              w.integer(1);
              w.integer(2);
              w.appends();
            }),
            "80049509000000000000005d94284b014b02652e");
  EXPECT_EQ(written([](auto& w) {
              w.empty_dict();
              w.memoize();
              w.mark();
              w.text("a");
              w.memoize();
              w.integer(1);
              w.text("b");
              w.memoize();
              w.empty_list();
              w.memoize();
              w.none();
              w.append();
              w.setitems();
            }),
            "80049513000000000000007d94288c0161944b018c0162945d944e61752e");
}

TEST(PickleWriter, LongTextAndUnframedBody) {
  const std::string s(300, 'x');
  const std::string h = written([&](auto& w) { w.text(s); w.memoize(); });
  EXPECT_EQ(h.substr(0, 30), "8004953301000000000000582c0100");
  // Beyond one frame: no FRAME opcode at all.
  const std::string big(100000, 'y');
  const std::string hb = written([&](auto& w) { w.binary(big); });
  EXPECT_EQ(hb.substr(0, 14), "800442a0860100");
  EXPECT_EQ(read_back(hb), "b100000");
}

TEST(PickleReader, ReadsWhatTheWriterWrote) {
  EXPECT_EQ(read_back("80049513000000000000007d94288c0161944b018c0162945d944e61752e"), "{'a':1,'b':[None");  // the test builder leaves containers open
  EXPECT_EQ(read_back("8004950c00000000000000284b014b024b034b0474942e"), "(1,2,3,4)");
  EXPECT_EQ(read_back("8004950b000000000000008a0800000000000000802e"), "-9223372036854775808");
  EXPECT_EQ(read_back("80049508000000000000008a05ffffff7fff2e"), "-2147483649");
  EXPECT_EQ(read_back("80049506000000000000004affffffff2e"), "-1");
  EXPECT_EQ(read_back("8004950a00000000000000473ff80000000000002e"), "1.500000");
}

TEST(PickleReader, MemoGetAndGlobalCall) {
  std::string out;
  pickle::writer w(out);
  w.start();
  w.global("mod", "fn");
  w.text("a");
  w.memoize();
  w.get(0);
  w.tuple(2);
  w.reduce();
  w.finish();
  EXPECT_EQ(read_back(hex(out)), "'mod'.'fn'('a','a')");
}

TEST(PickleReader, RefusesDamagedData) {
  bool done = true;
  EXPECT_EQ(read_back("80044b05", &done), "<refused>");   // no STOP
  EXPECT_FALSE(done);
  EXPECT_EQ(read_back("80044b052e00"), "<refused>");      // trailing byte
  EXPECT_EQ(read_back("80048c05616263"), "<refused>");    // length past the end
  EXPECT_EQ(read_back("8004652e"), "<refused>");          // APPENDS without mark
  EXPECT_EQ(read_back("80044b014b022e"), "<refused>");    // two values left
  EXPECT_EQ(read_back("8004632e"), "<refused>");          // an opcode it does not read
  EXPECT_EQ(read_back("00044e2e"), "<refused>");          // no PROTO
  EXPECT_EQ(read_back("80044b0061"), "<refused>");        // APPEND to a non-list
}
