#pragma once
// mphost: run Python callables in pools of mphost worker processes from a
// C++ application that links no Python. See host_pool.hpp (pools, futures),
// value.hpp (arguments and results), shared_array.hpp (zero-copy arrays) and
// remote_error.hpp (errors).
#include "mphost/host_pool.hpp"
#include "mphost/remote_error.hpp"
#include "mphost/shared_array.hpp"
#include "mphost/value.hpp"
