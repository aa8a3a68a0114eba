"""Listener and Client: addresses, authentication, robustness, and talking
to stock python3 peers in both directions (Unix and TCP sockets)."""

import os
import socket
import stat
import threading

import pytest

import multiprocessing
from multiprocessing import connection, util
from multiprocessing.connection import Client, Listener

from _helpers_connection import StockPeer

TIMEOUT = 30


def in_thread(func, *args):
    t = threading.Thread(target=func, args=args, daemon=True)
    t.start()
    return t


def test_default_address_is_a_private_socket_file():
    with Listener() as listener:
        address = listener.address
        assert isinstance(address, str)
        assert not address.startswith('\0')
        directory = os.path.dirname(address)
        assert directory == util.get_temp_dir()
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
        assert stat.S_ISSOCK(os.stat(address).st_mode)
        with Listener() as other:
            # Fresh, unguessable names.
            assert other.address != address
            assert len(os.path.basename(address)) >= 16
    # The socket file goes with the listener.
    assert not os.path.exists(address)


def test_arbitrary_address_and_address_type():
    assert connection.arbitrary_address('AF_INET') == ('localhost', 0)
    path = connection.arbitrary_address('AF_UNIX')
    assert path.startswith(util.get_temp_dir() + os.sep)
    with pytest.raises(ValueError):
        connection.arbitrary_address('AF_BOGUS')
    assert connection.address_type(('localhost', 0)) == 'AF_INET'
    assert connection.address_type('/tmp/x') == 'AF_UNIX'
    assert connection.address_type('\0abstract') == 'AF_UNIX'
    assert connection.address_type(r'\\.\pipe\x') == 'AF_PIPE'
    # As the stdlib: bytes must be an abstract name, other types are refused.
    with pytest.raises(ValueError, match='unrecognized'):
        connection.address_type(b'/tmp/x')
    with pytest.raises(TypeError, match='unrecognized'):
        connection.address_type(42)


def test_invalid_family():
    with pytest.raises(ValueError):
        Listener(r'\\.\test')
    with pytest.raises(ValueError):
        Listener(family='AF_PIPE')
    with pytest.raises(ValueError):
        Client(r'\\.\test')


@pytest.mark.parametrize('family', ['AF_UNIX', 'AF_INET'])
def test_listener_client_round_trip(family):
    with Listener(family=family) as listener:
        assert listener.last_accepted is None

        def client():
            with Client(listener.address) as c:
                c.send(['hello', 1])
                c.send_bytes(b'x' * 100000)
                assert c.recv() == 'reply'
        t = in_thread(client)
        with listener.accept() as conn:
            assert conn.recv() == ['hello', 1]
            assert conn.recv_bytes() == b'x' * 100000
            conn.send('reply')
        t.join(TIMEOUT)
        assert not t.is_alive()
        if family == 'AF_INET':
            host, port = listener.last_accepted
            assert host == '127.0.0.1' and port > 0
            assert listener.address[0] == '127.0.0.1'


def test_explicit_addresses():
    path = os.path.join(util.get_temp_dir(), 'explicit-' + os.urandom(4).hex())
    with Listener(path) as listener:
        assert listener.address == path
        t = in_thread(lambda: Client(path).send(5))
        with listener.accept() as conn:
            assert conn.recv() == 5
        t.join(TIMEOUT)
    assert not os.path.exists(path)
    with Listener(('127.0.0.1', 0), backlog=5) as listener:
        port = listener.address[1]
        t = in_thread(lambda: Client(('127.0.0.1', port), family='AF_INET').send(6))
        with listener.accept() as conn:
            assert conn.recv() == 6
        t.join(TIMEOUT)


def test_accept_after_close():
    listener = Listener()
    listener.close()
    listener.close()
    with pytest.raises(OSError, match='listener is closed'):
        listener.accept()


def test_authkey_type_is_checked():
    with pytest.raises(TypeError):
        Listener(authkey='text')
    with Listener() as listener:
        with pytest.raises(TypeError):
            Client(listener.address, authkey='text')


@pytest.mark.parametrize('family', ['AF_UNIX', 'AF_INET'])
def test_authentication_success_and_failure(family):
    with Listener(family=family, authkey=b'secret') as listener:
        results = []

        def server(count):
            for _ in range(count):
                try:
                    with listener.accept() as conn:
                        results.append(conn.recv())
                except multiprocessing.AuthenticationError as e:
                    results.append(e)
        t = in_thread(server, 3)
        with Client(listener.address, authkey=b'secret') as c:
            c.send('first')
        with pytest.raises(multiprocessing.AuthenticationError):
            Client(listener.address, authkey=b'wrong')
        # A wrong client does not break the listener.
        with Client(listener.address, authkey=b'secret') as c:
            c.send('third')
        t.join(TIMEOUT)
        assert not t.is_alive()
        assert results[0] == 'first'
        assert isinstance(results[1], multiprocessing.AuthenticationError)
        assert results[2] == 'third'


def test_client_without_key_against_authenticating_listener():
    with Listener(authkey=b'secret') as listener:
        errors = []

        def server():
            try:
                listener.accept()
            except (multiprocessing.AuthenticationError, OSError, EOFError) as e:
                errors.append(e)
        t = in_thread(server)
        with Client(listener.address) as c:
            # The listener speaks first: a challenge, as raw bytes.
            assert c.recv_bytes().startswith(connection.CHALLENGE)
            c.send_bytes(b'\0' * 16)
            assert c.recv_bytes() == connection.FAILURE
        t.join(TIMEOUT)
        assert isinstance(errors[0], multiprocessing.AuthenticationError)


class Marker:
    """Unpickling this creates a file: proof that something was unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


def test_nothing_is_unpickled_before_authentication(tmp_path):
    marker = str(tmp_path / 'unpickled')
    with Listener(authkey=b'secret') as listener:
        errors = []

        def server():
            try:
                listener.accept()
            except Exception as e:
                errors.append(e)
        t = in_thread(server)
        with Client(listener.address) as c:
            c.recv_bytes()
            # A pickle instead of the digest.
            c.send(Marker(marker))
            assert c.recv_bytes() == connection.FAILURE
        t.join(TIMEOUT)
        assert isinstance(errors[0], multiprocessing.AuthenticationError)
    # And the client side: a listener answering with pickles.
    with Listener() as fake_server:
        def evil():
            with fake_server.accept() as conn:
                conn.send(Marker(marker))
                with pytest.raises(EOFError):
                    conn.recv_bytes()
        t = in_thread(evil)
        with pytest.raises(multiprocessing.AuthenticationError):
            Client(fake_server.address, authkey=b'secret')
        t.join(TIMEOUT)
    assert not os.path.exists(marker)


def test_garbage_client_does_not_break_listener():
    with Listener(family='AF_INET', authkey=b'secret') as listener:
        outcomes = []

        def server():
            for _ in range(2):
                try:
                    with listener.accept() as conn:
                        outcomes.append(conn.recv())
                except Exception as e:
                    outcomes.append(e)
        t = in_thread(server)
        raw = socket.create_connection(listener.address, timeout=TIMEOUT)
        raw.recv(100)
        raw.sendall(b'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
        raw.close()
        with Client(listener.address, authkey=b'secret') as c:
            c.send('good client')
        t.join(TIMEOUT)
        assert isinstance(outcomes[0], OSError) and 'bad message length' in str(outcomes[0])
        assert outcomes[1] == 'good client'


def test_xml_listener_and_client():
    with connection.XmlListener(authkey=b'k') as listener:
        t = in_thread(lambda: connection.XmlClient(listener.address, authkey=b'k').send([1, 'two', 3.0]))
        with listener.accept() as conn:
            assert conn.recv() == [1, 'two', 3.0]
        t.join(TIMEOUT)


# -- a stock python3 peer --

STOCK_LISTENER = '''
from multiprocessing.connection import Listener
family, key = sys.argv[1], sys.argv[2].encode()
with Listener(family=family, authkey=key) as listener:
    print(repr(listener.address), flush=True)
    try:
        conn = listener.accept()
    except multiprocessing.AuthenticationError as e:
        print('AuthenticationError', flush=True)
        sys.exit(0)
    with conn:
        print('accepted', flush=True)
        obj = conn.recv()
        conn.send(('echo', obj))
        data = conn.recv_bytes()
        conn.send_bytes(data[::-1])
        conn.send_bytes(b'long form')
        print('done', flush=True)
'''

STOCK_CLIENT = '''
import ast
from multiprocessing.connection import Client
address, key = ast.literal_eval(sys.argv[1]), sys.argv[2].encode()
try:
    conn = Client(address, authkey=key)
except multiprocessing.AuthenticationError:
    print('AuthenticationError', flush=True)
    sys.exit(0)
with conn:
    print('connected', flush=True)
    conn.send({'from': 'stock'})
    print(repr(conn.recv()), flush=True)
    conn.send_bytes(b'z' * 70000)
    print(len(conn.recv_bytes()), flush=True)
    print(conn.recv_bytes().decode(), flush=True)
'''


@pytest.mark.parametrize('family', ['AF_UNIX', 'AF_INET'])
def test_mphost_client_to_stock_listener(family):
    import ast
    peer = StockPeer(STOCK_LISTENER, family, 'shared-key')
    try:
        address = ast.literal_eval(peer.readline())
        with Client(address, authkey=b'shared-key') as conn:
            assert peer.readline() == 'accepted'
            conn.send({'x': [1, 2]})
            assert conn.recv() == ('echo', {'x': [1, 2]})
            payload = os.urandom(100000)
            conn.send_bytes(payload)
            assert conn.recv_bytes() == payload[::-1]
            assert conn.recv_bytes() == b'long form'
        assert peer.readline() == 'done'
        code, _out, err = peer.finish()
        assert code == 0, err
    finally:
        peer.kill()


@pytest.mark.parametrize('family', ['AF_UNIX', 'AF_INET'])
def test_mphost_client_wrong_key_to_stock_listener(family):
    import ast
    peer = StockPeer(STOCK_LISTENER, family, 'stock-key')
    try:
        address = ast.literal_eval(peer.readline())
        with pytest.raises(multiprocessing.AuthenticationError):
            Client(address, authkey=b'other-key')
        assert peer.readline() == 'AuthenticationError'
        code, _out, err = peer.finish()
        assert code == 0, err
    finally:
        peer.kill()


@pytest.mark.parametrize('family', ['AF_UNIX', 'AF_INET'])
def test_stock_client_to_mphost_listener(family):
    with Listener(family=family, authkey=b'shared-key') as listener:
        peer = StockPeer(STOCK_CLIENT, repr(listener.address), 'shared-key')
        try:
            with listener.accept() as conn:
                assert peer.readline() == 'connected'
                assert conn.recv() == {'from': 'stock'}
                conn.send(('reply', 42))
                assert peer.readline() == repr(('reply', 42))
                data = conn.recv_bytes()
                assert data == b'z' * 70000
                conn.send_bytes(b'q' * 123456)
                assert peer.readline() == '123456'
                conn.send_bytes('ünïcode'.encode())
                assert peer.readline() == 'ünïcode'
            code, _out, err = peer.finish()
            assert code == 0, err
        finally:
            peer.kill()


@pytest.mark.parametrize('family', ['AF_UNIX', 'AF_INET'])
def test_stock_client_wrong_key_to_mphost_listener(family):
    with Listener(family=family, authkey=b'mphost-key') as listener:
        peer = StockPeer(STOCK_CLIENT, repr(listener.address), 'other-key')
        try:
            with pytest.raises(multiprocessing.AuthenticationError):
                listener.accept()
            assert peer.readline() == 'AuthenticationError'
            code, _out, err = peer.finish()
            assert code == 0, err
        finally:
            peer.kill()


def test_long_frames_understood_by_stock(monkeypatch):
    """The long form (used from 2 GiB on) as a stock peer reads it."""
    import ast
    monkeypatch.setattr(connection, '_MAX_SHORT', 100)
    peer = StockPeer(STOCK_LISTENER, 'AF_UNIX', 'k')
    try:
        address = ast.literal_eval(peer.readline())
        with Client(address, authkey=b'k') as conn:
            assert peer.readline() == 'accepted'
            conn.send(list(range(1000)))
            assert conn.recv() == ('echo', list(range(1000)))
            conn.send_bytes(b'abc' * 1000)
            assert conn.recv_bytes() == (b'abc' * 1000)[::-1]
            assert conn.recv_bytes() == b'long form'
        assert peer.readline() == 'done'
    finally:
        peer.kill()


def test_stock_long_frame_read_by_mphost():
    """A stock sender's long-form frame (forced the same way) reads back."""
    code = '''
    import ast, struct
    from multiprocessing.connection import Client
    conn = Client(ast.literal_eval(sys.argv[1]), authkey=b'k')
    # Write a long-form frame by hand through the stock connection's fd.
    payload = b'long frame from stock'
    conn._send(struct.pack('!i', -1) + struct.pack('!Q', len(payload)) + payload)
    conn.send_bytes(b'short')
    conn.close()
    '''
    with Listener(authkey=b'k') as listener:
        peer = StockPeer(code, repr(listener.address))
        try:
            with listener.accept() as conn:
                assert conn.recv_bytes() == b'long frame from stock'
                assert conn.recv_bytes() == b'short'
                with pytest.raises(EOFError):
                    conn.recv_bytes()
            code, _out, err = peer.finish()
            assert code == 0, err
        finally:
            peer.kill()


def test_pickled_objects_cross_to_stock_and_back():
    """Frames of send()/recv() are plain pickles a stock peer loads."""
    import ast
    peer = StockPeer(STOCK_LISTENER, 'AF_INET', 'k')
    try:
        address = ast.literal_eval(peer.readline())
        with Client(address, authkey=b'k') as conn:
            peer.readline()
            value = {'nested': [1, 2.5, None, b'b', frozenset({3})], 'big': 10 ** 40}
            conn.send(value)
            assert conn.recv() == ('echo', value)
            conn.send_bytes(b'')
            assert conn.recv_bytes() == b''
            conn.recv_bytes()
    finally:
        peer.kill()
