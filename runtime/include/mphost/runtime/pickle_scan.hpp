#pragma once
// pickle_scan: walks the opcodes of any pickle (protocols 0 to 5) the way
// CPython's C unpickler reads them, skipping every argument and building
// nothing. No Python here.
//
// Contract. find_overrunning_bytearray(data) returns the first BYTEARRAY8
// opcode the unpickler would reach whose declared length is larger than the
// bytes left after it (and no larger than PTRDIFF_MAX), or nothing. The walk
// stops, returning nothing, at STOP, at a byte that is not an opcode, or at an
// argument that does not fit in the data: the unpickler raises there before
// any BYTEARRAY8 that follows. It never reads outside `data`, never
// allocates, and is linear in the number of opcodes.
//
// Why: for such an opcode, Python 3.11's unpickler first allocates a
// bytearray of the declared length; when that allocation fails,
// PyByteArray_FromStringAndSize releases an object whose export count was
// never set, and the release may print "SystemError: deallocated bytearray
// object has exported buffers" on stderr. Knowing the opcode beforehand lets
// the caller raise what the unpickler would raise without that allocation.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace mphost::runtime::pickle {

struct overrunning_bytearray {
  std::size_t offset;   // of the BYTEARRAY8 opcode byte in the data
  std::uint64_t length; // the length it declares
};

std::optional<overrunning_bytearray> find_overrunning_bytearray(std::span<const std::byte> data) noexcept;

}  // namespace mphost::runtime::pickle
