"""Nothing is unpickled before authentication, and the forkserver runs
nothing for a peer without its key.

Each attacker sends a pickle whose __reduce__ would create a marker file
(builtins.open(marker, 'w')) -- before the challenge, or instead of its
answer -- to a Listener with an authkey (unix and TCP), to a Client (from a
fake server), to a manager server and to the forkserver's socket. The marker
must never appear, the attacked side must refuse, and it must keep serving
the legitimate peer afterwards."""

import multiprocessing
import os
import pickle
import socket
import struct
import threading
import time

import pytest
from multiprocessing import connection

KEY = b'security-test-authkey'
TIMEOUT = 20


class Planted:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


def frame(payload):
    return struct.pack('!i', len(payload)) + payload


def read_frame(sock):
    """One length-prefixed frame, or None once the peer closed."""
    head = b''
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    size, = struct.unpack('!i', head)
    body = b''
    while len(body) < size:
        chunk = sock.recv(size - len(body))
        if not chunk:
            return None
        body += chunk
    return body


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / 'unpickled'
    yield str(path)
    assert not path.exists(), 'a pickle was loaded before authentication'


def attack(address, family, payload, mode):
    """Connect to `address` and send `payload` framed: 'before' the
    challenge arrives, or 'instead' of its answer. Returns what came back
    (frames) until the peer closed or fell silent."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    replies = []
    try:
        sock.connect(address)
        if mode == 'instead':
            replies.append(read_frame(sock))
        sock.sendall(frame(payload) + frame(payload))
        sock.settimeout(2)
        try:
            while (reply := read_frame(sock)) is not None:
                replies.append(reply)
        except (socket.timeout, ConnectionResetError):
            pass
    finally:
        sock.close()
    return replies


@pytest.mark.parametrize('mode', ['before', 'instead'])
@pytest.mark.parametrize('family', ['AF_UNIX', 'AF_INET'])
def test_listener_unpickles_nothing_before_authentication(marker, family, mode):
    address = ('127.0.0.1', 0) if family == 'AF_INET' else None
    with connection.Listener(address, family=family, authkey=KEY) as listener:
        outcome = []

        def serve():
            try:
                outcome.append(listener.accept())
            except Exception as e:  # noqa: BLE001 (the outcome is the point)
                outcome.append(e)

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        replies = attack(listener.address, getattr(socket, family), pickle.dumps(Planted(marker)), mode)
        server.join(TIMEOUT)
        assert not server.is_alive()
        assert isinstance(outcome[0], multiprocessing.AuthenticationError), outcome
        assert replies and replies[0].startswith(b'#CHALLENGE#')
        assert b'#FAILURE#' in replies
        # The listener still serves a client with the key.
        server = threading.Thread(target=lambda: outcome.append(listener.accept()), daemon=True)
        server.start()
        with connection.Client(listener.address, family=family, authkey=KEY) as client:
            server.join(TIMEOUT)
            client.send({'ok': 1})
            assert outcome[1].recv() == {'ok': 1}
            outcome[1].close()


def test_client_unpickles_nothing_from_a_server_without_the_key(marker):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(('127.0.0.1', 0))
    server.listen(1)
    payload = pickle.dumps(Planted(marker))

    def fake_server():
        conn, _ = server.accept()
        with conn:
            conn.sendall(frame(payload) + frame(payload))
            conn.settimeout(5)
            try:
                conn.recv(100)
            except OSError:
                pass

    thread = threading.Thread(target=fake_server, daemon=True)
    thread.start()
    try:
        with pytest.raises(multiprocessing.AuthenticationError):
            connection.Client(server.getsockname(), authkey=KEY)
    finally:
        thread.join(TIMEOUT)
        server.close()


@pytest.mark.parametrize('mode', ['before', 'instead'])
def test_manager_server_unpickles_nothing_before_authentication(marker, mode):
    ctx = multiprocessing.get_context('spawn')
    with ctx.Manager() as manager:
        address = manager.address
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        replies = attack(address, family, pickle.dumps(Planted(marker)), mode)
        assert replies and replies[0].startswith(b'#CHALLENGE#')
        # The server still serves its own clients.
        shared = manager.dict(a=1)
        assert shared['a'] == 1


def _children_of(pid):
    found = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                text = open(f'/proc/{entry}/stat').read()
            except OSError:
                continue
            if int(text[text.rindex(')') + 2:].split()[1]) == pid:
                found.append(int(entry))
    return sorted(found)


def _noop():
    pass


def _closed_by_peer(sock):
    sock.settimeout(TIMEOUT)
    try:
        return sock.recv(100) == b''
    except ConnectionResetError:
        return True


def test_forkserver_runs_nothing_for_a_peer_without_the_key(marker):
    import _mphost
    from multiprocessing import forkserver
    ctx = multiprocessing.get_context('forkserver')
    p = ctx.Process(target=_noop)
    p.start()
    p.join(TIMEOUT)
    zygote = forkserver._forkserver._zygote
    before = _children_of(zygote.pid)
    payload = pickle.dumps(Planted(marker))
    r, w = os.pipe()
    try:
        # A pickle, framed and bare.
        for data in (frame(payload), payload):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(zygote.address)
                sock.sendall(data)
                assert _closed_by_peer(sock)
        # A well-formed request with descriptors and a wrong key.
        wrong = ('0' if zygote.token[0] != '0' else '1') * len(zygote.token)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(zygote.address)
            socket.send_fds(sock, [b'MPFS' + struct.pack('=I', 2) + wrong.encode()], [r, w])
            assert _closed_by_peer(sock)
        with pytest.raises(Exception):
            _mphost.forkserver_request(zygote.address, wrong, [r, w])
        time.sleep(0.3)
        assert _children_of(zygote.pid) == before
        # Nothing wrote to the descriptors handed over.
        os.set_blocking(r, False)
        with pytest.raises(BlockingIOError):
            os.read(r, 1)
    finally:
        os.close(r)
        os.close(w)
    # The zygote still serves its program.
    p = ctx.Process(target=_noop)
    p.start()
    p.join(TIMEOUT)
    assert p.exitcode == 0


def test_the_planted_pickle_does_create_the_marker_when_loaded(tmp_path):
    # The control: the other tests' absence of a marker means something.
    path = tmp_path / 'unpickled'
    pickle.loads(pickle.dumps(Planted(str(path)))).close()
    assert path.exists()
