# mphost embeds Debian's system interpreter, never whichever python3 comes
# first on PATH: the launcher must load the same libpython3.11 as /usr/bin/python3.
set(MPHOST_PYTHON "/usr/bin/python3.11" CACHE FILEPATH "Interpreter whose libpython is embedded")
set(Python3_EXECUTABLE "${MPHOST_PYTHON}")
set(Python3_FIND_STRATEGY LOCATION)
set(Python3_FIND_UNVERSIONED_NAMES NEVER)
find_package(Python3 3.11 EXACT REQUIRED COMPONENTS Interpreter Development.Embed)
find_package(pybind11 2.10 CONFIG REQUIRED)
