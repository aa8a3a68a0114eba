"""Named POSIX shared memory: SharedMemory and ShareableList.

A SharedMemory is a segment in /dev/shm, created owner-only (0600), mapped
with mmap and exposed as a memoryview (``buf``). Any process that knows the
name can attach, mphost or stock python3 alike: names, sizes and the
ShareableList byte layout are the stdlib's. The program tree's resource
tracker removes segments that are still there when the program ends.
Segments are created through ``_posixshmem`` (shm_open/shm_unlink).

Differences from the stdlib, all on failure paths or where it loses data:
a failed attach never unlinks the segment it tried to attach to, and a
ShareableList gives a new string item the stdlib's room (counted in
characters) unless its UTF-8 bytes need more, where the stdlib would
silently cut the text.
"""

__all__ = ['SharedMemory', 'ShareableList']

import contextlib
import functools
import mmap
import os
import secrets
import struct
import threading
import types

import _posixshmem

from . import resource_tracker

_USE_POSIX = True

_O_CREX = os.O_CREAT | os.O_EXCL
# create=True opens with these, whatever a subclass's _flags say.
_CREATE_FLAGS = _O_CREX | os.O_RDWR

# Some systems (FreeBSD) limit names to 14 characters; the stdlib keeps
# within that everywhere, and so do we.
_SHM_SAFE_NAME_LENGTH = 14
_SHM_NAME_PREFIX = '/psm_'


# Random bytes in a name: two hex digits each. Linux has no 14-character
# limit: 96 bits, so that no name can be guessed.
_NAME_RANDOM_BYTES = 12


def _make_filename():
    """A fresh random segment name: '/psm_' and random hex digits."""
    return _SHM_NAME_PREFIX + secrets.token_hex(_NAME_RANDOM_BYTES)


def _open_unused_name(flags, mode):
    """Open a segment under fresh random names until one is not taken;
    return (name, descriptor)."""
    for candidate in iter(_make_filename, None):
        with contextlib.suppress(FileExistsError):
            return candidate, _posixshmem.shm_open(candidate, flags, mode=mode)


def _mapped(fd, grow_to):
    """A shared mapping of the whole segment open as `fd`, after growing it
    to `grow_to` bytes unless that is 0."""
    if grow_to:
        os.ftruncate(fd, grow_to)
    return mmap.mmap(fd, os.fstat(fd).st_size)


# What a SharedMemory holds, in the order close() lets go of it: the
# attribute, its value when not held, how to let go of it.
_HOLDINGS = (
    ('_buf', None, memoryview.release),
    ('_mmap', None, mmap.mmap.close),
    ('_fd', -1, os.close),
)


class SharedMemory:
    """A shared memory segment: create one, or attach to one by name.

    close() ends this object's access; unlink() destroys the segment (once,
    in one process, when no process needs it any more).
    """

    # Class-level defaults: close() and unlink() work even on an object
    # whose __init__ failed half-way. Subclasses may change _flags.
    _name = None
    _fd = -1
    _mmap = None
    _buf = None
    _flags = os.O_RDWR
    _mode = 0o600
    _prepend_leading_slash = True

    def __init__(self, name=None, create=False, size=0):
        if not size >= 0:
            raise ValueError("'size' must be a positive integer")
        if create:
            if size == 0:
                raise ValueError("'size' must be a positive number different from zero")
            self._flags = _CREATE_FLAGS
        exclusive = bool(self._flags & os.O_EXCL)
        if name is None and not exclusive:
            raise ValueError("'name' can only be None if create=True")

        if name is None:
            self._name, self._fd = _open_unused_name(self._flags, self._mode)
        else:
            self._name = '/' + name if self._prepend_leading_slash else name
            self._fd = _posixshmem.shm_open(self._name, self._flags, mode=self._mode)

        try:
            mapping = _mapped(self._fd, size if create else 0)
        except BaseException:
            self._let_go('_fd')
            if create:
                # Ours and unusable: remove it. A segment we only tried to
                # attach to belongs to someone else and stays.
                with contextlib.suppress(OSError):
                    _posixshmem.shm_unlink(self._name)
            raise

        resource_tracker.register(self._name, 'shared_memory')
        self._mmap, self._buf, self._size = mapping, memoryview(mapping), len(mapping)

    def __del__(self):
        try:
            self.close()
        except OSError:
            pass

    def __reduce__(self):
        return self.__class__, (self.name, False, self.size)

    def __repr__(self):
        return f'{self.__class__.__name__}({self.name!r}, size={self.size})'

    @property
    def buf(self):
        """A memoryview of the segment's bytes."""
        return self._buf

    @property
    def name(self):
        """The segment's name, as other processes pass it to attach."""
        if self._prepend_leading_slash and self._name.startswith('/'):
            return self._name[1:]
        return self._name

    @property
    def size(self):
        """Size in bytes."""
        return self._size

    def close(self):
        """End this object's access; the segment itself stays."""
        for attr, _idle, _release in _HOLDINGS:
            self._let_go(attr)

    def _let_go(self, attr):
        """Release what this object holds under `attr` (see _HOLDINGS), once:
        the attribute shows the idle value before the release runs."""
        _attr, idle, release = next(entry for entry in _HOLDINGS if entry[0] == attr)
        held = getattr(self, attr)
        if held != idle:
            setattr(self, attr, idle)
            release(held)

    def unlink(self):
        """Destroy the segment's name; memory goes when the last mapping does.

        Call it once, in one process: a second call raises FileNotFoundError.
        """
        if self._name:
            _posixshmem.shm_unlink(self._name)
            resource_tracker.unregister(self._name, 'shared_memory')


#
# ShareableList
#
# Layout of the segment, shared with the stdlib (so that stock python3 and
# mphost processes can attach to each other's lists); every integer native
# byte order:
#
#   8 bytes            n, the number of items (signed 64-bit)
#   (n + 1) * 8 bytes  offset of each item's slot from the start of the
#                      data area, then the data area's length
#   data area          item slots: 8 bytes for int/float/bool/None, a
#                      multiple of 8 bytes for str/bytes (zero-padded)
#   n * 8 bytes        each item's struct format, zero-padded to 8 bytes
#   n bytes            each item's kind: 0 number/bool, 1 str, 2 bytes, 3 None
#

_encoding = 'utf8'

_KIND_AS_IS, _KIND_STR, _KIND_BYTES, _KIND_NONE = range(4)


def _decode_str(raw):
    return raw.rstrip(b'\x00').decode(_encoding)


def _decode_bytes(raw):
    return raw.rstrip(b'\x00')


class ShareableList:
    """A fixed-length list of int, float, bool, str, bytes and None items in
    a shared memory segment. Items may be replaced (a str or bytes item
    within the room its slot has), never added or removed."""

    _types_mapping = {
        int: 'q',
        float: 'd',
        bool: 'xxxxxxx?',
        str: '%ds',
        bytes: '%ds',
        None.__class__: 'xxxxxx?x',
    }
    _alignment = 8
    _back_transforms_mapping = {
        _KIND_AS_IS: lambda value: value,
        _KIND_STR: _decode_str,
        _KIND_BYTES: _decode_bytes,
        _KIND_NONE: lambda _value: None,
    }

    @staticmethod
    def _extract_recreation_code(value):
        """The kind byte stored for `value`."""
        if isinstance(value, str):
            return _KIND_STR
        if isinstance(value, bytes):
            return _KIND_BYTES
        if value is None:
            return _KIND_NONE
        return _KIND_AS_IS

    def __init__(self, sequence=None, *, name=None):
        if name is None or sequence is not None:
            items = list(sequence or ())
            formats = [self._slot_format(item) for item in items]
            encoded = [item.encode(_encoding) if isinstance(item, str) else item for item in items]
            self._list_len = len(items)
            self._allocated_offsets = [0]
            for fmt in formats:
                width = self._alignment if fmt[-1] != 's' else int(fmt[:-1])
                self._allocated_offsets.append(self._allocated_offsets[-1] + width)
            size = (8 * (self._list_len + 2) + self._allocated_offsets[-1]
                    + 8 * self._list_len + self._list_len)
            self.shm = SharedMemory(name, create=True, size=size)
            buf = self.shm.buf
            struct.pack_into('q' + self._format_size_metainfo, buf, 0,
                             self._list_len, *self._allocated_offsets)
            data_start = self._offset_data_start
            for offset, fmt, value in zip(self._allocated_offsets, formats, encoded):
                struct.pack_into(fmt, buf, data_start + offset, value)
            struct.pack_into(self._format_packing_metainfo, buf, self._offset_packing_formats,
                             *(fmt.encode(_encoding) for fmt in formats))
            struct.pack_into(self._format_back_transform_codes, buf,
                             self._offset_back_transform_codes,
                             *(self._extract_recreation_code(item) for item in items))
        else:
            self.shm = SharedMemory(name)
            self._list_len = len(self)
            self._allocated_offsets = list(
                struct.unpack_from(self._format_size_metainfo, self.shm.buf, 8))

    def _slot_format(self, item):
        try:
            fmt = self._types_mapping[type(item)]
        except KeyError:
            raise KeyError(type(item)) from None
        if isinstance(item, (str, bytes)):
            # The stdlib's room: the length (in characters for a str) and
            # at least one zero, in 8-byte steps. Multi-byte text that
            # would not fit gets the room its UTF-8 bytes need instead.
            align = self._alignment
            room = align * (len(item) // align + 1)
            if isinstance(item, str):
                size = len(item.encode(_encoding))
                if size > room:
                    room = align * (size // align + 1)
            fmt = fmt % (room,)
        return fmt

    def _check_position(self, position):
        if position >= self._list_len or self._list_len < 0:
            raise IndexError('Requested position out of range.')

    def _get_packing_format(self, position):
        """The struct format of the item at `position`."""
        position += self._list_len if position < 0 else 0
        self._check_position(position)
        raw = struct.unpack_from('8s', self.shm.buf, self._offset_packing_formats + position * 8)[0]
        return raw.rstrip(b'\x00').decode(_encoding)

    def _get_back_transform(self, position):
        """The function turning the unpacked item at `position` into its value."""
        self._check_position(position)
        code = struct.unpack_from('b', self.shm.buf, self._offset_back_transform_codes + position)[0]
        return self._back_transforms_mapping[code]

    def _set_packing_format_and_transform(self, position, fmt_as_str, value):
        self._check_position(position)
        struct.pack_into('8s', self.shm.buf, self._offset_packing_formats + position * 8,
                         fmt_as_str.encode(_encoding))
        struct.pack_into('b', self.shm.buf, self._offset_back_transform_codes + position,
                         self._extract_recreation_code(value))

    def _normalize(self, position):
        if not isinstance(position, int):
            raise TypeError('ShareableList indices must be integers, not %s'
                            % type(position).__name__)
        return position if position >= 0 else position + self._list_len

    def __getitem__(self, position):
        position = self._normalize(position)
        if not 0 <= position < self._list_len:
            raise IndexError('index out of range')
        fmt = self._get_packing_format(position)
        (value,) = struct.unpack_from(
            fmt, self.shm.buf, self._offset_data_start + self._allocated_offsets[position])
        return self._get_back_transform(position)(value)

    def __setitem__(self, position, value):
        position = self._normalize(position)
        if not 0 <= position < self._list_len:
            raise IndexError('assignment index out of range')
        slot_start = self._allocated_offsets[position]
        if isinstance(value, (str, bytes)):
            room = self._allocated_offsets[position + 1] - slot_start
            packed = value.encode(_encoding) if isinstance(value, str) else value
            if len(packed) > room:
                raise ValueError('bytes/str item exceeds available storage')
            current = self._get_packing_format(position)
            fmt = current if current[-1] == 's' else self._types_mapping[str] % (room,)
        else:
            try:
                fmt = self._types_mapping[type(value)]
            except KeyError:
                raise KeyError(type(value)) from None
            packed = value
        self._set_packing_format_and_transform(position, fmt, value)
        struct.pack_into(fmt, self.shm.buf, self._offset_data_start + slot_start, packed)

    def __iter__(self):
        for position in range(self._list_len):
            yield self[position]

    def __reduce__(self):
        return functools.partial(self.__class__, name=self.shm.name), ()

    def __len__(self):
        return struct.unpack_from('q', self.shm.buf, 0)[0]

    def __repr__(self):
        return f'{self.__class__.__name__}({list(self)}, name={self.shm.name!r})'

    @property
    def format(self):
        """The struct formats of all items, concatenated."""
        return ''.join(self._get_packing_format(i) for i in range(self._list_len))

    @property
    def _format_size_metainfo(self):
        return 'q' * (self._list_len + 1)

    @property
    def _format_packing_metainfo(self):
        return '8s' * self._list_len

    @property
    def _format_back_transform_codes(self):
        return 'b' * self._list_len

    @property
    def _offset_data_start(self):
        return (self._list_len + 2) * 8

    @property
    def _offset_packing_formats(self):
        return self._offset_data_start + self._allocated_offsets[-1]

    @property
    def _offset_back_transform_codes(self):
        return self._offset_packing_formats + self._list_len * 8

    def count(self, value):
        """Number of items equal to `value`."""
        return sum(value == item for item in self)

    def index(self, value):
        """Position of the first item equal to `value`; ValueError if none."""
        for position, item in enumerate(self):
            if value == item:
                return position
        raise ValueError(f'{value!r} not in this container')

    __class_getitem__ = classmethod(types.GenericAlias)


#
# SharedMemoryManager and its server. The stdlib defines them in
# managers.py; they are built here, on first use, over the managers module
# (which hands these names over to this module), so that importing
# shared_memory does not import the managers.
#

_MANAGER_NAMES = ('SharedMemoryManager', 'SharedMemoryServer', '_SharedMemoryTracker')


def __getattr__(name):
    if name in _MANAGER_NAMES:
        _build_manager_classes()
        return globals()[name]
    raise AttributeError('module %r has no attribute %r' % (__name__, name))


_build_lock = threading.Lock()


def _build_manager_classes():
    with _build_lock:
        if '_SharedMemoryTracker' not in globals():
            _define_manager_classes()


def _define_manager_classes():
    from . import managers
    from . import util
    from .context import ProcessError

    class _SharedMemoryTracker:
        """The segments a SharedMemoryManager's server removes at shutdown."""

        def __init__(self, name, segment_names=None):
            self.shared_memory_context_name = name
            self.segment_names = [] if segment_names is None else segment_names

        def register_segment(self, segment_name):
            """Track segment `segment_name`."""
            util.debug(f'Register segment {segment_name!r} in pid {os.getpid()}')
            self.segment_names.append(segment_name)

        def destroy_segment(self, segment_name):
            """Stop tracking `segment_name` and unlink it."""
            util.debug(f'Destroy segment {segment_name!r} in pid {os.getpid()}')
            self.segment_names.remove(segment_name)
            segment = SharedMemory(segment_name)
            segment.close()
            segment.unlink()

        def unlink(self):
            """Destroy every tracked segment."""
            for segment_name in list(self.segment_names):
                self.destroy_segment(segment_name)

        def __del__(self):
            util.debug(f'Call {self.__class__.__name__}.__del__ in {os.getpid()}')
            self.unlink()

        def __getstate__(self):
            return (self.shared_memory_context_name, self.segment_names)

        def __setstate__(self, state):
            self.__init__(*state)

    class SharedMemoryServer(managers.Server):
        """A manager server that also owns shared memory segments."""

        public = managers.Server.public + ['track_segment', 'release_segment', 'list_segments']

        def __init__(self, *args, **kwargs):
            managers.Server.__init__(self, *args, **kwargs)
            address = self.address
            if isinstance(address, bytes):
                address = os.fsdecode(address)
            self.shared_memory_context = _SharedMemoryTracker(f'shm_{address}_{os.getpid()}')
            util.debug(f'SharedMemoryServer started by pid {os.getpid()}')

        def create(self, c, typeid, /, *args, **kwargs):
            """Create a shared object; types registered with a callable that
            has ``_shared_memory_proxy`` also get the segment tracker."""
            if hasattr(self.registry[typeid][-1], '_shared_memory_proxy'):
                kwargs['shared_memory_context'] = self.shared_memory_context
            return managers.Server.create(self, c, typeid, *args, **kwargs)

        def shutdown(self, c):
            """Unlink every tracked segment, then stop the server."""
            self.shared_memory_context.unlink()
            return managers.Server.shutdown(self, c)

        def track_segment(self, c, segment_name):
            """Unlink segment `segment_name` when the server shuts down."""
            self.shared_memory_context.register_segment(segment_name)

        def release_segment(self, c, segment_name):
            """Unlink segment `segment_name` now and stop tracking it."""
            self.shared_memory_context.destroy_segment(segment_name)

        def list_segments(self, c):
            """The names of the tracked segments."""
            return self.shared_memory_context.segment_names

    class SharedMemoryManager(managers.BaseManager):
        """A manager whose SharedMemory and ShareableList are created in the
        calling process and unlinked by the server when it shuts down."""

        _Server = SharedMemoryServer

        def __init__(self, *args, **kwargs):
            # The server must use this program's tracker, not start its own
            # (which would warn about segments the server already removed).
            resource_tracker.ensure_running()
            managers.BaseManager.__init__(self, *args, **kwargs)
            util.debug(f'{self.__class__.__name__} created by pid {os.getpid()}')

        def __del__(self):
            util.debug(f'{self.__class__.__name__}.__del__ by pid {os.getpid()}')

        def get_server(self):
            """A SharedMemoryServer for this manager, to run with serve_forever()."""
            if self._state.value != managers.State.INITIAL:
                if self._state.value == managers.State.STARTED:
                    raise ProcessError('Already started SharedMemoryServer')
                if self._state.value == managers.State.SHUTDOWN:
                    raise ProcessError('SharedMemoryManager has shut down')
                raise ProcessError('Unknown state {!r}'.format(self._state.value))
            return self._Server(self._registry, self._address, self._authkey, self._serializer)

        def _tracked(self, make, name_of):
            with self._Client(self._address, authkey=self._authkey) as conn:
                obj = make()
                try:
                    managers.dispatch(conn, None, 'track_segment', (name_of(obj),))
                except BaseException:
                    _segment_of(obj).unlink()
                    raise
            return obj

        def SharedMemory(self, size):
            """A new SharedMemory of `size` bytes, unlinked at shutdown."""
            return self._tracked(lambda: SharedMemory(None, create=True, size=size),
                                 lambda shm: shm.name)

        def ShareableList(self, sequence):
            """A new ShareableList of `sequence`, unlinked at shutdown."""
            return self._tracked(lambda: ShareableList(sequence), lambda sl: sl.shm.name)

    for cls in (_SharedMemoryTracker, SharedMemoryServer, SharedMemoryManager):
        # Where the stdlib has them (and where pickle looks them up).
        cls.__module__ = 'multiprocessing.managers'
        cls.__qualname__ = cls.__name__
    globals().update(_SharedMemoryTracker=_SharedMemoryTracker,
                     SharedMemoryServer=SharedMemoryServer,
                     SharedMemoryManager=SharedMemoryManager)


def _segment_of(obj):
    return obj.shm if isinstance(obj, ShareableList) else obj
