"""Message identities and receipts of `_mphost.Channel` (channel.hpp,
Identities and receipts): send() returns the identity of the message it
wrote, recv(receipt=(buffer, offset)) stores the identity of the message it
takes into shared memory, where it outlives a reader killed right after."""

import ctypes
import multiprocessing
import os
import signal
import struct

import pytest

import _mphost

TIMEOUT = 30


def _slot(array, index):
    return struct.unpack_from('=Q', memoryview(array).cast('B'), index * 8)[0]


def test_send_returns_identities_recv_stores_them():
    ch = _mphost.Channel.create(capacity=4096, unbounded=True, role='both')
    try:
        receipts = multiprocessing.RawArray(ctypes.c_uint64, 4)
        sent = []
        for i in range(300):
            # Small, large (a block) and gathered parts; the stream outgrows
            # the first ring.
            if i % 10 == 0:
                data = bytes(100000)
            elif i % 3 == 0:
                data = [b'part-', str(i).encode()]
            else:
                data = b'm%d' % i
            ident = ch.send(data)
            assert type(ident) is int and ident > 0
            sent.append(ident)
        assert len(set(sent)) == len(sent)
        for i, ident in enumerate(sent):
            msg = ch.recv(0, receipt=(receipts, 16))
            assert msg is not None
            assert _slot(receipts, 2) == ident, i
        assert ch.recv(0, receipt=(receipts, 16)) is None
        assert _slot(receipts, 2) == sent[-1]
        assert _slot(receipts, 0) == 0 and _slot(receipts, 1) == 0
    finally:
        ch.close()


def test_send_timeout_still_returns_false():
    ch = _mphost.Channel.create(capacity=4096, unbounded=False, role='both')
    try:
        while ch.send(b'x' * 200, 0) is not False:
            pass
        assert ch.send(b'x' * 200, 0.01) is False
        assert ch.recv(0) == b'x' * 200
        assert ch.send(b'y', 0) > 0
    finally:
        ch.close()


@pytest.mark.parametrize('offset', [-8, 4, 1, 29, 32])
def test_receipt_outside_or_misaligned_is_refused(offset):
    ch = _mphost.Channel.create(role='both')
    try:
        ch.send(b'kept')
        buf = multiprocessing.RawArray(ctypes.c_uint64, 4)
        with pytest.raises(ValueError):
            ch.recv(0, receipt=(buf, offset))
        with pytest.raises(ValueError):
            ch.recv(0, receipt=buf)
        # Nothing was taken by the refused calls.
        assert ch.recv(0, receipt=(buf, 24)) == b'kept'
    finally:
        ch.close()


def test_receipt_needs_a_writable_buffer():
    ch = _mphost.Channel.create(role='both')
    try:
        ch.send(b'kept')
        with pytest.raises((TypeError, BufferError, ValueError)):
            ch.recv(0, receipt=(bytes(16), 0))
        assert ch.recv(0) == b'kept'
    finally:
        ch.close()


def _take_and_die(name, ticket, receipts):
    reader = _mphost.Channel.open(name, 'reader', ticket)
    reader.recv(10, receipt=(receipts, 8))
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize('method', ['fork', 'spawn', 'forkserver'])
def test_receipt_outlives_a_reader_killed_after_the_take(method):
    ctx = multiprocessing.get_context(method)
    ch = _mphost.Channel.create(unbounded=True, role='writer')
    try:
        receipts = multiprocessing.RawArray(ctypes.c_uint64, 2)
        ticket = ch.hand_over('reader')
        first = ch.send(b'task' * 30000)   # a block
        second = ch.send(b'next')
        p = ctx.Process(target=_take_and_die, args=(ch.name, ticket, receipts))
        p.start()
        p.join(TIMEOUT)
        assert p.exitcode == -signal.SIGKILL
        assert _slot(receipts, 1) == first
        reader = _mphost.Channel.open(ch.name, 'reader')
        try:
            got = reader.recv(TIMEOUT, receipt=(receipts, 0))
            assert got == b'next' and _slot(receipts, 0) == second
        finally:
            reader.close()
    finally:
        ch.close()
