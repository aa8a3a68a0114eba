// Writes the seed corpora of the fuzz targets from our own encoders:
//   fuzz_make_seeds DIR   (DIR/<target>/seed-*, normally tests/fuzz/corpus)
// Each seed is a small valid input (plus a few near misses), laid out as its
// target reads it (see each fuzz_*.cpp).
#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "mphost/ipc/frame.hpp"
#include "mphost/ipc/large_block.hpp"
#include "mphost/ipc/stream_frame.hpp"
#include "mphost/runtime/forkserver.hpp"
#include "mphost/runtime/pickle_writer.hpp"

namespace {

using namespace mphost;
using bytes = std::string;

std::string root;

void put(const char* target, int n, const bytes& data) {
  const std::string dir = root + "/" + target;
  ::mkdir(dir.c_str(), 0755);
  const std::string path = dir + "/seed-" + std::to_string(n);
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    std::perror(path.c_str());
    std::exit(1);
  }
  std::fwrite(data.data(), 1, data.size(), f);
  std::fclose(f);
}

bytes le(std::uint64_t v, int n) {
  bytes out;
  for (int i = 0; i < n; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
  return out;
}

// ---- channel frames: [start u16 (x16)][span u16][ring bytes from start] ----
struct ring {
  std::vector<std::byte> data = std::vector<std::byte>(4096);
  std::uint64_t at = 0;
  std::uint32_t writer = ipc::frame_writer(0, 1);

  ipc::frame_header* frame(ipc::frame_kind kind, const bytes& payload) {
    ipc::frame_header* h = ipc::begin_frame(data.data(), at, kind, static_cast<std::uint32_t>(payload.size()), writer);
    std::memcpy(data.data() + at + sizeof(ipc::frame_header), payload.data(), payload.size());
    at += ipc::frame_size(payload.size());
    return h;
  }
  void committed(const bytes& payload, ipc::frame_kind kind = ipc::frame_kind::data) {
    ipc::commit_frame(frame(kind, payload));
  }
  bytes seed(std::uint64_t start = 0) const {
    bytes out = le(start / 16, 2) + le(at - start, 2);
    out.append(reinterpret_cast<const char*>(data.data()) + start, at - start);
    return out;
  }
};

void channel_seeds() {
  int n = 0;
  {
    ring r;
    r.committed("hello");
    put("fuzz_channel_frame", n++, r.seed());
  }
  {
    ring r;
    r.committed("a");
    r.committed(bytes(100, 'b'));
    r.committed(bytes(1024, 'c'));
    put("fuzz_channel_frame", n++, r.seed());
  }
  {
    ring r;
    ipc::abandon_frame(r.frame(ipc::frame_kind::data, "gone"));
    r.committed("after");
    r.frame(ipc::frame_kind::data, "reserved, never committed");  // a writer died here
    put("fuzz_channel_frame", n++, r.seed());
  }
  {
    // A block frame: the ref names a block that is not there.
    ring r;
    const ipc::block_ref ref = ipc::detail::make_block_ref("mphost-ch-fuzz-nothere", 1 << 20);
    r.committed(bytes(reinterpret_cast<const char*>(&ref), sizeof ref), ipc::frame_kind::block);
    put("fuzz_channel_frame", n++, r.seed());
  }
  {
    // A frame at the end of the ring, then padding, then one at the start:
    // the seed's bytes wrap (start near the end).
    ring r;
    r.at = 4096 - 64;
    const std::uint64_t start = r.at;
    r.committed("end");
    ipc::write_padding(r.data.data(), 4096, r.at, r.writer);
    bytes out = le(start / 16, 2) + le(64 + 32, 2);
    out.append(reinterpret_cast<const char*>(r.data.data()) + start, 64);
    r.at = 0;
    r.committed("wrapped");
    out.append(reinterpret_cast<const char*>(r.data.data()), 32);
    put("fuzz_channel_frame", n++, out);
  }
}

void block_ref_seeds() {
  int n = 0;
  for (const char* name : {"mphost-ch-fuzz-b0a1b2c3d4", "mphost-ch-fuzz-bx", "mphost-ch-fuzz-b.long_name-0123456789"}) {
    for (std::uint64_t size : {std::uint64_t{1}, std::uint64_t{1} << 20, ~std::uint64_t{0}}) {
      const ipc::block_ref ref = ipc::detail::make_block_ref(name, size);
      put("fuzz_block_ref", n++, bytes(reinterpret_cast<const char*>(&ref), sizeof ref));
    }
  }
}

bytes stream_message(const bytes& body, std::uint64_t short_limit = ipc::stream_short_limit) {
  const ipc::stream_prefix p = ipc::encode_stream_prefix(body.size(), short_limit);
  return bytes(reinterpret_cast<const char*>(p.bytes.data()), p.size) + body;
}

void stream_seeds() {
  int n = 0;
  for (char pattern : {'\x00', '\x13', '\x85', '\xff'}) {
    put("fuzz_stream_frame", n++, pattern + stream_message("hello"));
    put("fuzz_stream_frame", n++, pattern + stream_message("") + stream_message(bytes(300, 'x'), 3));
    put("fuzz_stream_frame", n++, pattern + stream_message(bytes(5000, 'y')) + stream_message("tail"));
  }
  put("fuzz_stream_frame", n++, bytes(1, '\0') + stream_message("cut").substr(0, 5));
  put("fuzz_stream_frame", n++, bytes(1, '\0') + bytes("\xff\xff\xff\xfe", 4));  // below -1: corrupt
}

void pickle_seeds() {
  int n = 0;
  std::string out;
  runtime::pickle::writer w(out);
  auto emit = [&](auto&& body) {
    w.start();
    body();
    w.finish();
    put("fuzz_pickle_reader", n++, out);
  };
  emit([&] { w.none(); });
  emit([&] { w.integer(-5); });
  emit([&] { w.integer(1LL << 40); });
  emit([&] { w.integer(INT64_MIN); });
  emit([&] { w.real(2.5); });
  emit([&] { w.text("h\xc3\xa9llo"); });
  emit([&] { w.binary(bytes(300, 'b')); });
  emit([&] {
    w.mark();
    w.integer(1);
    w.text("two");
    w.boolean(true);
    w.none();
    w.tuple(4);
  });
  emit([&] {
    w.empty_list();
    w.memoize();
    w.mark();
    w.integer(1);
    w.get(0);
    w.appends();
  });
  emit([&] {
    w.empty_dict();
    w.memoize();
    w.mark();
    w.text("k");
    w.binary("v");
    w.text("list");
    w.empty_list();
    w.integer(3);
    w.append();
    w.setitems();
  });
  emit([&] {
    w.global("builtins", "float");
    w.integer(3);
    w.tuple(1);
    w.reduce();
  });
  emit([&] {
    w.empty_tuple();
    w.text("x");
    w.pop();
    w.mark();
    w.integer(7);
    w.pop_mark();
  });
}

void handshake_seeds() {
  put("fuzz_handshake", 0, le(5, 8) + "hello");
  put("fuzz_handshake", 1, le(0, 8) + le(3, 8) + "abc");
  put("fuzz_handshake", 2, le(1000, 8) + "short");                // cut by end of file
  put("fuzz_handshake", 3, le(std::uint64_t{1} << 35, 8) + "x");  // a length the bytes do not back
}

void forkserver_seeds() {
  const std::string token(runtime::forkserver_token_size, 'k');
  for (std::uint32_t count : {0u, 1u, 3u, 16u, 17u}) {
    put("fuzz_forkserver_request", static_cast<int>(count),
        bytes(1, static_cast<char>(count)) + "MPFS" + le(count, 4) + token);
  }
  put("fuzz_forkserver_request", 100, bytes(1, '\x02') + "MPFS" + le(2, 4) + std::string(token.size(), 'j'));
}

void preauth_seeds() {
  const bytes digest = "0123456789abcdef";
  const bytes challenge = "#CHALLENGE#" + bytes(20, '\x5a');
  put("fuzz_preauth", 0, stream_message(digest) + stream_message(challenge) + stream_message("#WELCOME#"));
  put("fuzz_preauth", 1, stream_message(digest) + stream_message(challenge) + stream_message("#FAILURE#"));
  put("fuzz_preauth", 2, stream_message(bytes(300, 'd')));
  put("fuzz_preauth", 3, stream_message(digest, 0) + stream_message(challenge, 0) + stream_message("#WELCOME#", 0));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_make_seeds DIR\n");
    return 2;
  }
  root = argv[1];
  ::mkdir(root.c_str(), 0755);
  channel_seeds();
  block_ref_seeds();
  stream_seeds();
  pickle_seeds();
  handshake_seeds();
  forkserver_seeds();
  preauth_seeds();
  return 0;
}
