"""Fuzz loop for the Python side of a Listener's pre-authentication path.

The libFuzzer target fuzz_preauth covers the native reads that a peer's
bytes reach before authentication; this loop drives the whole path as a
client meets it: a real multiprocessing.connection.Listener (AF_UNIX) in
this process accepts one connection per trial, and runs the handshake
(_challenge.py over Connection.recv_bytes, i.e. _mphost.stream_recv) against
a peer thread that plays a client with a mutated script: right or wrong
digests, bytes flipped, cut or appended, lengths that lie (negative, huge,
long form), a planted pickle whose __reduce__ would record that it ran, or
plain random bytes. The random generator has a fixed seed (printed on
failure) so a failing trial reproduces.

Each trial must end within its timeout with the connection authenticated
(only when the peer really proved the key) or one of the errors the stdlib
gives for bad peers (AuthenticationError, EOFError, OSError); nothing may
be unpickled (the planted __reduce__ never runs), no unraisable exception
may be reported, and after the loop a genuine Client still connects and
exchanges an object. Run under mphost:
    build/bin/mphost tests/fuzz/preauth_loop.py [--seconds 15] [--trials N] [--seed S]
"""
import argparse
import hmac
import os
import random
import socket
import struct
import sys
import tempfile
import threading
import time

from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener

AUTHKEY = b'preauth-fuzz-key'
PLANTED = []


def _planted_hit(*args):
    PLANTED.append(args)
    return 'planted'


class Planted:
    def __reduce__(self):
        return (_planted_hit, ('reduce ran',))


def frame(body, long_form=False):
    if long_form:
        return struct.pack('!iQ', -1, len(body)) + body
    return struct.pack('!i', len(body)) + body


def first_message(data):
    """The body of the first message in `data` as a reader parses it, or None."""
    if len(data) < 4:
        return None
    (n,) = struct.unpack('!i', data[:4])
    at = 4
    if n == -1:
        if len(data) < 12:
            return None
        (n,) = struct.unpack('!Q', data[4:12])
        at = 12
    elif n < 0:
        return None
    return data[at:at + n] if len(data) >= at + n else None


def read_message(sock):
    """One message from the listener, or None once it closed or went quiet."""
    def exactly(n):
        out = b''
        while len(out) < n:
            chunk = sock.recv(n - len(out))
            if not chunk:
                return None
            out += chunk
        return out
    try:
        head = exactly(4)
        if head is None:
            return None
        (n,) = struct.unpack('!i', head)
        if n == -1:
            (n,) = struct.unpack('!Q', exactly(8))
        return exactly(n)
    except (OSError, struct.error, TypeError):
        return None


def mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        how = rng.randrange(5)
        if how == 0 and data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif how == 1 and data:
            del data[rng.randrange(len(data)):]
        elif how == 2:
            data += rng.randbytes(rng.randint(1, 40))
        elif how == 3 and data:
            at = rng.randrange(len(data))
            data[at:at] = bytes([rng.randrange(256)]) * rng.randint(1, 8)
        else:
            data[0:0] = struct.pack('!i', rng.choice([-2, -1, 0, 1, 255, 256, 257, 2**31 - 1]))
    return bytes(data)


try:
    import _mphost  # noqa: F401
    BAD_PEER = (AuthenticationError, EOFError, OSError)
except ImportError:
    # Stock python3 (for comparison): its answer_challenge asserts on a
    # message without the challenge tag.
    BAD_PEER = (AuthenticationError, EOFError, OSError, AssertionError)

PLANTED_PICKLE = __import__('pickle').dumps(Planted())


def peer_script(rng, sock):
    """Plays a client with one mutated script; True if it should authenticate."""
    kind = rng.randrange(8)
    if kind == 0:  # plain random bytes
        sock.sendall(rng.randbytes(rng.randint(0, 600)))
        return False
    if kind == 1:  # a planted pickle where the digest should be, in any framing
        sock.sendall(frame(PLANTED_PICKLE, rng.random() < 0.5) + frame(PLANTED_PICKLE))
        return False
    challenge = read_message(sock)
    if challenge is None or not challenge.startswith(b'#CHALLENGE#'):
        return False
    nonce = challenge[len(b'#CHALLENGE#'):]
    key = AUTHKEY if kind != 2 else b'wrong key'
    digest = hmac.new(key, nonce, 'md5').digest()
    honest = kind in (3, 4, 7) and key == AUTHKEY
    wire = frame(digest, long_form=(kind == 4))
    if kind == 5:
        sock.sendall(mutate(rng, wire))
        # A mutated length may leave the listener waiting for more: say that
        # no more comes, and only listen from here.
        sock.shutdown(socket.SHUT_WR)
        return False
    sock.sendall(wire)
    if read_message(sock) != b'#WELCOME#':
        return False
    # Our turn to challenge the listener; then our verdict on its answer.
    my_nonce = rng.randbytes(20)
    ours = frame(b'#CHALLENGE#' + my_nonce)
    if kind == 6:
        sock.sendall(mutate(rng, ours))
        sock.shutdown(socket.SHUT_WR)
        return False
    sock.sendall(ours)
    answer = read_message(sock)
    verdict = b'#WELCOME#' if answer == hmac.new(AUTHKEY, my_nonce, 'md5').digest() else b'#FAILURE#'
    if kind == 7:
        # Some mutations leave a valid verdict (bytes appended after it, the
        # same length in the long form): what the listener reads decides.
        mutated = mutate(rng, frame(verdict))
        sock.sendall(mutated + frame(PLANTED_PICKLE))
        honest = first_message(mutated + frame(PLANTED_PICKLE)) == b'#WELCOME#'
    else:
        sock.sendall(frame(verdict))
    return honest and verdict == b'#WELCOME#'


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--seconds', type=float, default=15)
    parser.add_argument('--trials', type=int, default=100000)
    parser.add_argument('--seed', type=int, default=20261204)
    options = parser.parse_args()
    unraisable = []
    sys.unraisablehook = lambda u: unraisable.append(repr(u.exc_value))
    rng = random.Random(options.seed)
    outcomes = {}
    with tempfile.TemporaryDirectory(prefix='mphost-preauth-') as where:
        address = os.path.join(where, 'listener.sock')
        listener = Listener(address, 'AF_UNIX', authkey=AUTHKEY)
        started = time.monotonic()
        trial = 0
        while trial < options.trials and time.monotonic() - started < options.seconds:
            trial += 1
            state = {}

            def peer():
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(5)
                try:
                    sock.connect(address)
                    state['honest'] = peer_script(rng, sock)
                    try:
                        sock.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    # Take what the listener still sends, for a moment: a
                    # listener that gave up may close its end only later.
                    sock.settimeout(0.2)
                    while sock.recv(4096):
                        pass
                except OSError:
                    pass
                finally:
                    sock.close()

            thread = threading.Thread(target=peer, daemon=True)
            thread.start()
            begun = time.monotonic()
            try:
                conn = listener.accept()
                conn.close()
                outcome = 'authenticated'
            except BAD_PEER as e:
                outcome = type(e).__name__
            except BaseException as e:
                print('preauth_loop: seed %d trial %d: unexpected %r' % (options.seed, trial, e))
                return 1
            thread.join(10)
            took = time.monotonic() - begun
            if thread.is_alive() or took > 10:
                print('preauth_loop: seed %d trial %d: no end within 10 s' % (options.seed, trial))
                return 1
            if (outcome == 'authenticated') != bool(state.get('honest')):
                print('preauth_loop: seed %d trial %d: %s, but the peer %s the key' % (
                    options.seed, trial, outcome, 'proved' if state.get('honest') else 'did not prove'))
                return 1
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if PLANTED or unraisable:
                print('preauth_loop: seed %d trial %d: planted=%r unraisable=%r' % (
                    options.seed, trial, PLANTED, unraisable))
                return 1
        # The listener still serves a genuine client.
        result = {}

        def genuine():
            with Client(address, 'AF_UNIX', authkey=AUTHKEY) as c:
                c.send({'after': trial})
                result['echo'] = c.recv()

        thread = threading.Thread(target=genuine, daemon=True)
        thread.start()
        with listener.accept() as conn:
            conn.send(conn.recv())
        thread.join(10)
        listener.close()
        if result.get('echo') != {'after': trial}:
            print('preauth_loop: a genuine client failed after the loop: %r' % (result,))
            return 1
    print('preauth_loop: seed %d, %d trials in %.1f s: %s; planted __reduce__ ran 0 times' % (
        options.seed, trial, time.monotonic() - started,
        ', '.join('%s %d' % kv for kv in sorted(outcomes.items()))))
    return 0


if __name__ == '__main__':
    sys.exit(main())
