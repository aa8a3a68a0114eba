# Warning flags shared by every mphost target.
add_library(mphost_warnings INTERFACE)
target_compile_options(mphost_warnings INTERFACE -Wall -Wextra -Wpedantic -Wno-missing-field-initializers)
