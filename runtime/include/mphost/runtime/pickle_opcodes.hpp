#pragma once
// The opcodes of pickle protocol 4 that mphost writes and reads itself
// (pickle_writer.hpp, pickle_reader.hpp): the builtin values, the framing,
// the memo, and the two opcodes that name a callable and call it, which is
// how a reference (a shared array, an opaque pickle) travels inside a value.

namespace mphost::runtime::pickle {

inline constexpr int protocol = 4;

inline constexpr char op_proto = '\x80';
inline constexpr char op_frame = '\x95';
inline constexpr char op_stop = '.';
inline constexpr char op_none = 'N';
inline constexpr char op_true = '\x88';
inline constexpr char op_false = '\x89';
inline constexpr char op_binint = 'J';
inline constexpr char op_binint1 = 'K';
inline constexpr char op_binint2 = 'M';
inline constexpr char op_long1 = '\x8a';
inline constexpr char op_binfloat = 'G';
inline constexpr char op_short_binunicode = '\x8c';
inline constexpr char op_binunicode = 'X';
inline constexpr char op_binunicode8 = '\x8d';
inline constexpr char op_short_binbytes = 'C';
inline constexpr char op_binbytes = 'B';
inline constexpr char op_binbytes8 = '\x8e';
inline constexpr char op_empty_tuple = ')';
inline constexpr char op_tuple1 = '\x85';
inline constexpr char op_tuple2 = '\x86';
inline constexpr char op_tuple3 = '\x87';
inline constexpr char op_tuple = 't';
inline constexpr char op_mark = '(';
inline constexpr char op_pop = '0';
inline constexpr char op_pop_mark = '1';
inline constexpr char op_empty_list = ']';
inline constexpr char op_append = 'a';
inline constexpr char op_appends = 'e';
inline constexpr char op_empty_dict = '}';
inline constexpr char op_setitem = 's';
inline constexpr char op_setitems = 'u';
inline constexpr char op_memoize = '\x94';
inline constexpr char op_binget = 'h';
inline constexpr char op_long_binget = 'j';
inline constexpr char op_stack_global = '\x93';
inline constexpr char op_reduce = 'R';

}  // namespace mphost::runtime::pickle
