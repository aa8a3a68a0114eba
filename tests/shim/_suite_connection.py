"""Connections between processes, written once and instantiated per start
method by test_connection_{fork,spawn,forkserver}.py (each sets
START_METHOD): connections and sockets handed to children as arguments or
pickled to running children, Listener/Client with the inherited authkey,
wait() over connections and sentinels."""

import os
import pickle
import socket
import time

import pytest

import multiprocessing
from multiprocessing import reduction
from multiprocessing.connection import Client, Connection, Listener, Pipe, wait

from _start_method import StartMethodSuite

TIMEOUT = 60


# -- targets run in children: module level so that spawn can import them --

def echo(conn):
    """Echo objects (and byte messages) until EOF or None."""
    while True:
        try:
            kind, value = conn.recv()
        except EOFError:
            break
        if kind == 'stop':
            break
        if kind == 'bytes':
            conn.send_bytes(value)
        else:
            conn.send(('echo', value))
    conn.close()


def write_then_exit(conn, count):
    for i in range(count):
        conn.send(i)
    conn.close()


def receive_connection_and_use_it(control):
    """Get a connection pickled over `control`, talk over it."""
    conn = control.recv()
    conn.send(('got it', os.getpid(), conn.readable, conn.writable))
    conn.send(conn.recv() * 2)
    sock = control.recv()
    sock.sendall(b'from child')
    sock.close()
    control.send('done')
    conn.close()
    control.close()


def connect_with_inherited_authkey(address, greeting):
    authkey = multiprocessing.current_process().authkey
    with Client(address, authkey=bytes(authkey)) as conn:
        conn.send((greeting, os.getpid()))
        conn.recv()


def connect_with_wrong_authkey(address, result):
    try:
        Client(address, authkey=b'definitely not the key')
    except multiprocessing.AuthenticationError:
        result.send('AuthenticationError')
    else:
        result.send('connected')
    result.close()


def send_own_connection_back(control):
    """Create a pipe here and pickle one end to the parent: the parent
    takes the descriptor from this child's resource_sharer."""
    a, b = Pipe()
    control.send(b)
    a.send('made in the child')
    assert control.recv() == 'taken'
    assert a.recv() == 'parent wrote'
    control.send('ok')


def write_raw_byte(conn):
    os.write(conn.fileno(), b'\0')


def send_descriptor_and_exit(conn, path):
    fd = os.open(path, os.O_RDONLY)
    reduction.send_handle(conn, fd, os.getppid())
    os.close(fd)
    conn.close()


def sleep_then_send(conn, delay, value):
    time.sleep(delay)
    conn.send(value)


class ConnectionSuite(StartMethodSuite):
    def finish(self, p):
        p.join(TIMEOUT)
        assert not p.is_alive(), 'child did not end within %ss' % TIMEOUT
        return p.exitcode

    def test_duplex_pipe_as_argument(self):
        parent, child = Pipe()
        p = self.start(echo, child)
        child.close()
        parent.send(('obj', {'a': [1, 2]}))
        assert parent.recv() == ('echo', {'a': [1, 2]})
        big = os.urandom(3 << 20)
        parent.send(('bytes', big))
        assert parent.recv_bytes() == big
        parent.send(('stop', None))
        assert self.finish(p) == 0
        with pytest.raises(EOFError):
            parent.recv()

    def test_simplex_pipe_as_argument_and_eof(self):
        reader, writer = Pipe(duplex=False)
        p = self.start(write_then_exit, writer, 5)
        writer.close()
        got = []
        while True:
            try:
                got.append(reader.recv())
            except EOFError:
                break
        assert got == list(range(5))
        assert self.finish(p) == 0

    def test_connection_and_socket_pickled_to_running_child(self):
        control, control_child = Pipe()
        p = self.start(receive_connection_and_use_it, control_child)
        control_child.close()
        a, b = Pipe()
        control.send(b)
        b.close()
        tag, pid, readable, writable = a.recv()
        assert (tag, pid, readable, writable) == ('got it', p.pid, True, True)
        a.send(21)
        assert a.recv() == 42
        s1, s2 = socket.socketpair()
        control.send(s2)
        s2.close()
        s1.settimeout(TIMEOUT)
        assert s1.recv(100) == b'from child'
        assert control.recv() == 'done'
        assert self.finish(p) == 0
        s1.close()

    def test_connection_pickled_from_child_to_parent(self):
        control, control_child = Pipe()
        p = self.start(send_own_connection_back, control_child)
        control_child.close()
        conn = control.recv()
        assert conn.recv() == 'made in the child'
        control.send('taken')
        conn.send('parent wrote')
        assert control.recv() == 'ok'
        assert self.finish(p) == 0

    def test_listener_with_inherited_authkey(self):
        with Listener(authkey=bytes(multiprocessing.current_process().authkey)) as listener:
            children = [self.start(connect_with_inherited_authkey, listener.address, 'hi %d' % i)
                        for i in range(3)]
            seen = set()
            for _ in children:
                with listener.accept() as conn:
                    greeting, pid = conn.recv()
                    conn.send('bye')
                    seen.add(pid)
            assert seen == {c.pid for c in children}
            assert [self.finish(c) for c in children] == [0, 0, 0]

    def test_tcp_listener_rejects_child_with_wrong_key(self):
        with Listener(('127.0.0.1', 0), authkey=b'right key') as listener:
            result, result_child = Pipe(duplex=False)
            p = self.start(connect_with_wrong_authkey, listener.address, result_child)
            result_child.close()
            with pytest.raises(multiprocessing.AuthenticationError):
                listener.accept()
            assert result.recv() == 'AuthenticationError'
            assert self.finish(p) == 0

    def test_wait_on_connections_and_sentinels(self):
        readers = []
        children = []
        for i, delay in enumerate([0.3, 0.0, 0.15]):
            r, w = Pipe(duplex=False)
            children.append(self.start(sleep_then_send, w, delay, i))
            w.close()
            readers.append(r)
        pending = set(readers) | {c.sentinel for c in children}
        order = []
        deadline = time.monotonic() + TIMEOUT
        while pending and time.monotonic() < deadline:
            for obj in wait(list(pending), TIMEOUT):
                if isinstance(obj, int):
                    pending.discard(obj)
                else:
                    try:
                        order.append(obj.recv())
                    except EOFError:
                        pending.discard(obj)
        assert not pending
        assert sorted(order) == [0, 1, 2]
        assert [self.finish(c) for c in children] == [0, 0, 0]

    def test_pickled_descriptor_connection_cannot_be_taken_twice(self):
        # Descriptor connections travel through resource_sharer, once.
        s1, s2 = socket.socketpair()
        a, b = Connection(s1.detach()), Connection(s2.detach())
        data = reduction.ForkingPickler.dumps(b)
        first = pickle.loads(data)
        first.close()
        with pytest.raises(Exception):
            pickle.loads(data)
        a.close()
        b.close()

    def test_pipe_fileno_is_a_socket_connected_to_the_other_end(self):
        a, b = Pipe()
        for end in (a, b):
            with socket.socket(fileno=os.dup(end.fileno())) as sock:
                assert sock.family == socket.AF_UNIX and sock.type == socket.SOCK_STREAM
        p = self.start(write_raw_byte, b)
        # A raw byte is no descriptor: recv_handle says so, as over a socketpair.
        with pytest.raises(RuntimeError, match='received 0 items of ancdata'):
            reduction.recv_handle(a)
        assert self.finish(p) == 0
        b.send('still a connection')
        assert a.recv() == 'still a connection'

    def test_descriptor_from_a_child_that_has_exited(self):
        # The descriptor waits in the socket: the sender need not be alive.
        for duplex in (True, False):
            reader, writer = Pipe(duplex=duplex)
            p = self.start(send_descriptor_and_exit, writer, __file__)
            assert self.finish(p) == 0
            fd = reduction.recv_handle(reader)
            try:
                assert os.read(fd, 3) == b'"""'
            finally:
                os.close(fd)

    def test_select_on_pipe_fileno_follows_messages(self):
        import select
        a, b = Pipe()
        p = self.start(sleep_then_send, b, 0.2, 'late')
        assert select.select([a.fileno()], [], [], 0) == ([], [], [])
        ready, _, _ = select.select([a.fileno()], [], [], TIMEOUT)
        assert ready == [a.fileno()]
        assert a.recv() == 'late'
        # Drained: the socket goes quiet again.
        deadline = time.monotonic() + 10
        while select.select([a.fileno()], [], [], 0)[0] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert select.select([a.fileno()], [], [], 0)[0] == []
        assert self.finish(p) == 0
