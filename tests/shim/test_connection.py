"""multiprocessing.connection in one process: Connection, Pipe, the wire
format, damaged input, wait(), the challenge functions and pickling of
connections through resource_sharer."""

import array
import os
import pickle
import socket
import struct
import threading
import time

import pytest

import multiprocessing
from multiprocessing import connection, reduction, resource_sharer
from multiprocessing.connection import Connection, Pipe, wait

TIMEOUT = 30


def in_thread(func, *args):
    t = threading.Thread(target=func, args=args, daemon=True)
    t.start()
    return t


def raw_pair():
    """(Connection, raw socket) connected to each other."""
    a, b = socket.socketpair()
    return Connection(a.detach()), b


def fail_on_load():
    raise LookupError('raised while unpickling')


class Reconstructed:
    """Pickles as a call that fails when unpickled."""

    def __reduce__(self):
        return (fail_on_load, ())


def test_module_exports_stdlib_names():
    for name in ['Connection', 'Listener', 'Client', 'Pipe', 'wait', 'deliver_challenge',
                 'answer_challenge', 'families', 'default_family', 'BUFSIZE',
                 'CONNECTION_TIMEOUT', 'rebuild_connection', 'reduce_connection',
                 'arbitrary_address', 'address_type', 'SocketListener', 'SocketClient',
                 'XmlListener', 'XmlClient', 'CHALLENGE', 'WELCOME', 'FAILURE',
                 'MESSAGE_LENGTH']:
        assert hasattr(connection, name), name
    assert connection.families == ['AF_INET', 'AF_UNIX']
    assert connection.default_family == 'AF_UNIX'
    assert 'share/mphost/python' in connection.__file__


def test_duplex_pipe_objects_both_ways():
    a, b = Pipe()
    values = [None, 1, 2.5, 'text', b'bytes', [1, (2, 3)], {'k': {1, 2}}, array.array('d', [1.5])]
    for v in values:
        a.send(v)
        assert b.recv() == v
        b.send(v)
        assert a.recv() == v
    assert a.readable and a.writable and b.readable and b.writable
    a.close()
    b.close()


def test_simplex_pipe_directions():
    r, w = Pipe(duplex=False)
    assert r.readable and not r.writable
    assert w.writable and not w.readable
    with pytest.raises(OSError, match='connection is read-only'):
        r.send(1)
    with pytest.raises(OSError, match='connection is write-only'):
        w.recv()
    with pytest.raises(OSError, match='connection is write-only'):
        w.poll()
    w.send_bytes(b'one way')
    assert r.recv_bytes() == b'one way'
    r.close()
    w.close()


def test_send_bytes_offset_and_size():
    a, b = Pipe()
    data = b'0123456789'
    a.send_bytes(data, 2)
    assert b.recv_bytes() == b'23456789'
    a.send_bytes(data, 2, 3)
    assert b.recv_bytes() == b'234'
    a.send_bytes(data, 10)
    assert b.recv_bytes() == b''
    # Buffers with items wider than a byte are sent as their bytes.
    arr = array.array('i', [1, 2, 3])
    a.send_bytes(arr, 4, 4)
    assert b.recv_bytes() == array.array('i', [2]).tobytes()
    for offset, size, message in [(-1, None, 'offset is negative'),
                                  (11, None, 'buffer length < offset'),
                                  (0, -1, 'size is negative'),
                                  (5, 6, r'buffer length < offset \+ size')]:
        with pytest.raises(ValueError, match=message):
            a.send_bytes(data, offset, size)
    # Nothing was sent by the failed calls.
    assert not b.poll(0)


def test_recv_bytes_maxlength():
    a, b = Pipe()
    a.send_bytes(b'x' * 100)
    with pytest.raises(ValueError, match='negative maxlength'):
        b.recv_bytes(-1)
    a.send_bytes(b'small')
    # The first message (100 bytes) is still there.
    with pytest.raises(OSError, match='bad message length'):
        b.recv_bytes(10)
    # A duplex connection out of step stops reading but can still send.
    assert not b.readable
    b.send('still writable')
    assert a.recv() == 'still writable'

    r, w = Pipe(duplex=False)
    w.send_bytes(b'y' * 50)
    with pytest.raises(OSError, match='bad message length'):
        r.recv_bytes(49)
    assert r.closed
    # The read end is gone: the writer sees a broken pipe.
    with pytest.raises(BrokenPipeError):
        w.send_bytes(b'z' * 5)
    w.close()


def test_recv_bytes_maxlength_accepts_exact_size():
    a, b = Pipe()
    a.send_bytes(b'x' * 10)
    assert b.recv_bytes(10) == b'x' * 10


def test_recv_bytes_into():
    a, b = Pipe()
    buf = bytearray(10)
    a.send_bytes(b'abc')
    assert b.recv_bytes_into(buf) == 3
    assert buf == b'abc' + bytes(7)
    a.send_bytes(b'xyz')
    assert b.recv_bytes_into(buf, 7) == 3
    assert buf == b'abc' + bytes(4) + b'xyz'
    arr = array.array('i', [0] * 6)
    src = array.array('i', [7, 8, 9])
    a.send_bytes(src)
    assert b.recv_bytes_into(arr, 2 * arr.itemsize) == 3 * arr.itemsize
    assert list(arr) == [0, 0, 7, 8, 9, 0]
    with pytest.raises(ValueError, match='negative offset'):
        b.recv_bytes_into(buf, -1)
    with pytest.raises(ValueError, match='offset too large'):
        b.recv_bytes_into(buf, 11)
    # Too long: the whole message rides on the exception, the stream stays usable.
    a.send_bytes(b'0123456789ABCDEF')
    with pytest.raises(multiprocessing.BufferTooShort) as info:
        b.recv_bytes_into(bytearray(4))
    assert info.value.args == (b'0123456789ABCDEF',)
    a.send_bytes(b'12')
    assert b.recv_bytes_into(buf, 8) == 2
    assert buf[8:] == b'12'
    a.send_bytes(b'ab')
    with pytest.raises(multiprocessing.BufferTooShort):
        b.recv_bytes_into(buf, 9)
    a.send_bytes(b'next')
    assert b.recv_bytes() == b'next'


def test_closed_connection_raises_handle_is_closed():
    a, b = Pipe()
    a.close()
    assert a.closed
    a.close()  # twice is fine
    for call in (a.recv, a.recv_bytes, lambda: a.send(1), lambda: a.send_bytes(b'x'),
                 a.poll, a.fileno, lambda: a.recv_bytes_into(bytearray(4))):
        with pytest.raises(OSError, match='handle is closed'):
            call()
    b.close()


def test_context_manager_closes():
    a, b = Pipe()
    with a as entered:
        assert entered is a
        assert not a.closed
    assert a.closed
    with pytest.raises(EOFError):
        b.recv()


def test_eof_when_peer_is_gone_after_messages_drained():
    a, b = Pipe()
    a.send('last')
    a.send_bytes(b'words')
    a.close()
    assert b.poll(TIMEOUT)
    assert b.recv() == 'last'
    assert b.recv_bytes() == b'words'
    with pytest.raises(EOFError):
        b.recv()
    with pytest.raises(EOFError):
        b.recv_bytes()
    with pytest.raises(EOFError):
        b.recv_bytes_into(bytearray(10))
    r, w = Pipe(duplex=False)
    w.close()
    assert r.poll(TIMEOUT)  # end of file counts as readable
    with pytest.raises(EOFError):
        r.recv()


def test_send_to_closed_peer_is_broken_pipe():
    a, b = Pipe()
    b.close()
    with pytest.raises(BrokenPipeError):
        a.send_bytes(b'x' * 100000)


def test_poll_timeouts():
    a, b = Pipe()
    assert b.poll() is False
    assert b.poll(0.05) is False
    assert b.poll(-1) is False
    t = in_thread(lambda: (time.sleep(0.1), a.send('late')))
    assert b.poll(None) is True
    assert b.recv() == 'late'
    t.join(TIMEOUT)
    a.send(1)
    assert b.poll(TIMEOUT) is True
    assert b.poll(TIMEOUT) is True  # polling does not consume
    assert b.recv() == 1


@pytest.mark.parametrize('size', [0, 1, 16383, 16385, 5 << 20])
def test_message_sizes(size):
    a, b = Pipe()
    data = os.urandom(size)
    t = in_thread(a.send_bytes, data)
    assert b.recv_bytes() == data
    t.join(TIMEOUT)
    t = in_thread(a.send, data)
    assert b.recv() == data
    t.join(TIMEOUT)
    buf = bytearray(size + 3)
    t = in_thread(a.send_bytes, data)
    assert b.recv_bytes_into(buf, 3) == size
    assert buf[3:] == data
    t.join(TIMEOUT)


def test_constructor_validation():
    with pytest.raises(ValueError, match='invalid handle'):
        Connection(-1)
    r, w = os.pipe()
    try:
        with pytest.raises(ValueError, match='at least one'):
            Connection(r, readable=False, writable=False)
        with pytest.raises(AttributeError):  # as the stdlib: no __index__
            Connection('3')
    finally:
        os.close(r)
        os.close(w)
    r, w = os.pipe()
    c = Connection(r, writable=False)
    assert c.fileno() == r
    c.close()
    with pytest.raises(OSError):
        os.fstat(r)  # close() closed the descriptor
    os.close(w)


# -- the wire format, byte for byte --

def test_frames_written_are_the_stdlib_format():
    conn, raw = raw_pair()
    conn.send_bytes(b'hello')
    assert raw.recv(100) == struct.pack('!i', 5) + b'hello'
    conn.send_bytes(b'')
    assert raw.recv(100) == struct.pack('!i', 0)
    conn.send({'a': 1})
    data = raw.recv(1000)
    size, = struct.unpack('!i', data[:4])
    assert size == len(data) - 4
    assert pickle.loads(data[4:]) == {'a': 1}
    conn.close()
    raw.close()


def test_frames_read_in_the_stdlib_format():
    conn, raw = raw_pair()
    raw.sendall(struct.pack('!i', 3) + b'abc' + struct.pack('!i', 0))
    assert conn.recv_bytes() == b'abc'
    assert conn.recv_bytes() == b''
    # The long form: -1, then an unsigned 64-bit length.
    raw.sendall(struct.pack('!i', -1) + struct.pack('!Q', 4) + b'long')
    assert conn.recv_bytes() == b'long'
    # A frame split over several writes.
    payload = pickle.dumps(list(range(100)))
    frame = struct.pack('!i', len(payload)) + payload

    def dribble():
        for i in range(0, len(frame), 7):
            raw.sendall(frame[i:i + 7])
            time.sleep(0.001)
    t = in_thread(dribble)
    assert conn.recv() == list(range(100))
    t.join(TIMEOUT)
    conn.close()
    raw.close()


def test_long_frames_written_above_the_signed_limit(monkeypatch):
    # Messages of 2 GiB or more use the long form; lower the limit to see it.
    monkeypatch.setattr(connection, '_MAX_SHORT', 5)
    conn, raw = raw_pair()
    conn.send_bytes(b'123456')
    assert raw.recv(100) == struct.pack('!i', -1) + struct.pack('!Q', 6) + b'123456'
    conn.send_bytes(b'12345')
    assert raw.recv(100) == struct.pack('!i', 5) + b'12345'
    conn.close()
    raw.close()


def _read_exactly(sock, size):
    got = bytearray()
    while len(got) < size:
        chunk = sock.recv(min(size - len(got), 1 << 20))
        assert chunk, 'stream ended early'
        got += chunk
    return bytes(got)


def test_messages_larger_than_the_socket_buffer_go_out_whole():
    """A write the kernel takes only in part goes on from where it stopped;
    an object whose pickle has large payloads (sent as several parts) is
    the exact bytes of ForkingPickler.dumps, in one message."""
    conn, raw = raw_pair()
    big = bytes(range(256)) * (8 << 12)  # 8 MiB
    obj = ['head', big, bytearray(b'x' * 300000), 'tail']
    sender = in_thread(lambda: (conn.send_bytes(big, 1, len(big) - 2), conn.send(obj)))
    assert _read_exactly(raw, 4 + len(big) - 2) == struct.pack('!i', len(big) - 2) + big[1:-1]
    expected = bytes(reduction.ForkingPickler.dumps(obj))
    assert _read_exactly(raw, 4 + len(expected)) == struct.pack('!i', len(expected)) + expected
    sender.join(TIMEOUT)
    assert not sender.is_alive()
    # And back: the large message read in one piece.
    raw_sender = in_thread(raw.sendall, struct.pack('!i', len(expected)) + expected)
    assert conn.recv() == obj
    raw_sender.join(TIMEOUT)
    conn.close()
    raw.close()


class _HandlerRaised(Exception):
    pass


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason='signal handlers run in the main thread')
def test_signal_during_a_blocked_recv():
    """A signal that arrives while recv waits runs its handler, and the
    message is still received whole; a handler that raises ends the recv
    with its exception."""
    import signal
    conn, raw = raw_pair()
    fired = []
    old = signal.signal(signal.SIGALRM, lambda *_: fired.append(True))
    try:
        late = threading.Timer(0.3, raw.sendall, (struct.pack('!i', 2) + b'ok',))
        late.start()
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        assert conn.recv_bytes() == b'ok'
        assert fired
        late.join(TIMEOUT)

        def raising(*_):
            raise _HandlerRaised
        signal.signal(signal.SIGALRM, raising)
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(_HandlerRaised):
            conn.recv_bytes()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    conn.close()
    raw.close()


def test_stream_ending_between_pieces_is_eof_as_with_the_stdlib():
    """End of file right after a prefix (or after the long form's mark)
    is EOFError, as the stdlib reads each piece on its own."""
    for sent in (struct.pack('!i', 5), struct.pack('!i', -1)):
        conn, raw = raw_pair()
        raw.sendall(sent)
        raw.close()
        with pytest.raises(EOFError):
            conn.recv_bytes()
        conn.close()


def test_recv_reads_no_further_than_its_message():
    conn, raw = raw_pair()
    raw.sendall(struct.pack('!i', 3) + b'one' + struct.pack('!i', 3) + b'two')
    assert conn.recv_bytes() == b'one'
    # The second message is still in the socket, whole.
    assert raw.fileno() >= 0 and conn.poll(0)
    buf = bytearray(10)
    assert conn.recv_bytes_into(buf, 7) == 3
    assert buf[7:] == b'two'
    conn.close()
    raw.close()


# -- damaged input gives clear errors and the process keeps running --

def test_garbage_payload_is_a_clear_unpickling_error():
    conn, raw = raw_pair()
    raw.sendall(struct.pack('!i', 11) + b'not pickle!')
    with pytest.raises(pickle.UnpicklingError, match='11 bytes that is not a valid pickle'):
        conn.recv()
    # The frame was consumed: the connection goes on.
    raw.sendall(struct.pack('!i', 0))
    raw.sendall(b'\x00\x00\x00\x02\x80\x05')  # header + truncated pickle
    assert conn.recv_bytes() == b''
    with pytest.raises(pickle.UnpicklingError):
        conn.recv()
    good = pickle.dumps('fine')
    raw.sendall(struct.pack('!i', len(good)) + good)
    assert conn.recv() == 'fine'
    conn.close()
    raw.close()


def test_truncated_pickle_is_not_eof():
    conn, raw = raw_pair()
    data = pickle.dumps(list(range(50)))[:-10]
    raw.sendall(struct.pack('!i', len(data)) + data)
    with pytest.raises(pickle.UnpicklingError) as info:
        conn.recv()
    assert not isinstance(info.value, EOFError)
    conn.close()
    raw.close()


def test_reconstructor_errors_pass_through():
    a, b = Pipe()
    a.send(Reconstructed())
    with pytest.raises(LookupError, match='raised while unpickling'):
        b.recv()
    a.send('after')
    assert b.recv() == 'after'


def test_negative_length_is_bad_message_length():
    conn, raw = raw_pair()
    raw.sendall(struct.pack('!i', -7) + b'junk')
    with pytest.raises(OSError, match='bad message length'):
        conn.recv()
    conn.close()
    raw.close()


def test_stream_cut_inside_a_message():
    conn, raw = raw_pair()
    raw.sendall(struct.pack('!i', 100) + b'only ten b')
    raw.close()
    with pytest.raises(OSError, match='got end of file during message') as info:
        conn.recv_bytes()
    assert not isinstance(info.value, EOFError)
    conn.close()
    conn, raw = raw_pair()
    raw.sendall(b'\x00\x00')  # half a header
    raw.close()
    with pytest.raises(OSError, match='got end of file during message'):
        conn.recv()
    conn.close()


def test_header_too_large_for_maxlength_reads_nothing_more():
    conn, raw = raw_pair()
    raw.sendall(b'GET / HTTP/1.1\r\n\r\n')
    with pytest.raises(OSError, match='bad message length'):
        conn.recv_bytes(256)
    conn.close()
    raw.close()


# -- wait() --

def test_wait_on_mixed_objects():
    a, b = Pipe()
    s1, s2 = socket.socketpair()
    r, w = os.pipe()

    class HasFileno:
        def __init__(self, fd):
            self.fd = fd

        def fileno(self):
            return self.fd

    r2, w2 = os.pipe()
    wrapper = HasFileno(r2)
    objects = [b, s2, r, wrapper]
    try:
        assert wait(objects, 0) == []
        assert wait(objects, 0.05) == []
        a.send(1)
        assert wait(objects, TIMEOUT) == [b]
        s1.send(b'x')
        os.write(w, b'x')
        os.write(w2, b'x')
        ready = wait(objects, TIMEOUT)
        assert set(map(id, ready)) == set(map(id, objects))
        b.recv()
        s2.recv(1)
        os.read(r, 1)
        os.read(r2, 1)
        t = in_thread(lambda: (time.sleep(0.05), os.write(w, b'y')))
        assert wait(objects, None) == [r]
        t.join(TIMEOUT)
    finally:
        for fd in (r, w, r2, w2):
            os.close(fd)
        s1.close()
        s2.close()


def test_wait_sees_end_of_file():
    a, b = Pipe()
    a.close()
    assert wait([b], TIMEOUT) == [b]


# -- challenge functions --

class _FakeConnection:
    def __init__(self, replies):
        self.replies = list(replies)
        self.sent = []

    def recv_bytes(self, size):
        return self.replies.pop(0)

    def send_bytes(self, data):
        self.sent.append(data)


def test_deliver_challenge_rejects_wrong_digest():
    fake = _FakeConnection([b'something bogus'])
    with pytest.raises(multiprocessing.AuthenticationError):
        connection.deliver_challenge(fake, b'abc')
    assert fake.sent[0].startswith(connection.CHALLENGE)
    assert len(fake.sent[0]) == len(connection.CHALLENGE) + connection.MESSAGE_LENGTH
    assert fake.sent[1] == connection.FAILURE


def test_answer_challenge_rejected():
    fake = _FakeConnection([connection.CHALLENGE + b'x' * 20, b'something bogus'])
    with pytest.raises(multiprocessing.AuthenticationError):
        connection.answer_challenge(fake, b'abc')
    import hmac
    assert fake.sent == [hmac.new(b'abc', b'x' * 20, 'md5').digest()]


def test_answer_challenge_needs_a_challenge():
    fake = _FakeConnection([b'hello there'])
    with pytest.raises(multiprocessing.AuthenticationError, match='challenge'):
        connection.answer_challenge(fake, b'abc')
    assert fake.sent == []


def test_authkey_must_be_bytes():
    with pytest.raises(ValueError, match='Authkey must be bytes'):
        connection.deliver_challenge(_FakeConnection([]), 'text')
    with pytest.raises(ValueError, match='Authkey must be bytes'):
        connection.answer_challenge(_FakeConnection([]), 'text')


@pytest.mark.parametrize('server_key,client_key,ok', [
    (b'same', b'same', True), (b'server', b'client', False)])
def test_challenge_over_a_pipe(server_key, client_key, ok):
    a, b = Pipe()
    errors = []

    def server():
        try:
            connection.deliver_challenge(a, server_key)
            connection.answer_challenge(a, server_key)
        except multiprocessing.AuthenticationError as e:
            errors.append(e)
    t = in_thread(server)
    if ok:
        connection.answer_challenge(b, client_key)
        connection.deliver_challenge(b, client_key)
    else:
        with pytest.raises(multiprocessing.AuthenticationError, match='digest sent was rejected'):
            connection.answer_challenge(b, client_key)
    t.join(TIMEOUT)
    assert not t.is_alive()
    assert bool(errors) == (not ok)


# -- pickling connections within a process (resource_sharer) --

def test_pickled_connection_is_a_working_duplicate():
    a, b = Pipe()
    data = reduction.ForkingPickler.dumps(b)
    copy = pickle.loads(data)
    assert isinstance(copy, Connection)
    assert copy.fileno() != b.fileno()
    a.send('via copy')
    assert copy.recv() == 'via copy'
    copy.send('back')
    assert a.recv() == 'back'
    copy.close()
    r, w = Pipe(duplex=False)
    w2 = pickle.loads(reduction.ForkingPickler.dumps(w))
    assert (w2.readable, w2.writable) == (False, True)
    w2.send_bytes(b'simplex')
    assert r.recv_bytes() == b'simplex'
    for c in (a, b, r, w, w2):
        c.close()


def test_pickled_descriptor_connection_hands_out_its_descriptor_once():
    s1, s2 = socket.socketpair()
    a, b = Connection(s1.detach()), Connection(s2.detach())
    data = reduction.ForkingPickler.dumps(b)
    copy = pickle.loads(data)
    a.send('via copy')
    assert copy.recv() == 'via copy'
    with pytest.raises(Exception):
        pickle.loads(data)
    for c in (a, b, copy):
        c.close()


def test_pickled_socket_is_a_working_duplicate():
    s1, s2 = socket.socketpair()
    copy = pickle.loads(reduction.ForkingPickler.dumps(s2))
    s1.sendall(b'ping')
    assert copy.recv(4) == b'ping'
    for s in (s1, s2, copy):
        s.close()


def test_resource_sharer_stop_and_restart():
    a, b = Pipe()
    pending = reduction.ForkingPickler.dumps(b)
    resource_sharer.stop(timeout=TIMEOUT)
    assert resource_sharer._resource_sharer._service is None
    assert resource_sharer._resource_sharer._cache == {}
    # A new registration starts a new listener.
    copy = pickle.loads(reduction.ForkingPickler.dumps(b))
    a.send(3)
    assert copy.recv() == 3
    del pending
    resource_sharer.stop(timeout=TIMEOUT)


def test_resource_sharer_listener_is_private():
    s1, s2 = socket.socketpair()
    a, b = Connection(s1.detach()), Connection(s2.detach())
    reduction.ForkingPickler.dumps(b)
    address = resource_sharer._resource_sharer._service.address
    assert isinstance(address, str) and not address.startswith('\0')
    directory = os.path.dirname(address)
    assert directory == multiprocessing.util.get_temp_dir()
    assert os.stat(directory).st_mode & 0o777 == 0o700
    # A stranger without the authkey gets nothing.
    with pytest.raises(multiprocessing.AuthenticationError):
        connection.Client(address, authkey=b'not the key')
    resource_sharer.stop(timeout=TIMEOUT)
