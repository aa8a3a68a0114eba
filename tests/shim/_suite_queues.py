"""Queue, JoinableQueue and SimpleQueue across processes, written once and
instantiated per start method by test_queues_{fork,spawn,forkserver}.py."""

import os
import queue
import threading
import time

import pytest

import multiprocessing
from multiprocessing import queues

from _start_method import StartMethodSuite

TIMEOUT = 60


def produce(q, count, payload=b''):
    for i in range(count):
        q.put((os.getpid(), i, payload))


def consume(q, count, out):
    got = [q.get(timeout=TIMEOUT) for _ in range(count)]
    out.put(got)


def consume_simple(q, count, out):
    out.put([q.get() for _ in range(count)])


def work_and_mark_done(jq, count):
    for _ in range(count):
        jq.get(timeout=TIMEOUT)
        jq.task_done()


def simple_echo(inq, outq):
    while (item := inq.get()) is not None:
        outq.put(item)


class Unpicklable:
    def __reduce__(self):
        raise TypeError('this object refuses to be pickled')


class QueueSuite(StartMethodSuite):
    def test_items_from_a_child_arrive_in_order(self):
        q = self.ctx.Queue()
        p = self.start(produce, q, 1000)
        items = [q.get(timeout=TIMEOUT) for _ in range(1000)]
        p.join(TIMEOUT)
        assert p.exitcode == 0
        assert [i for _pid, i, _ in items] == list(range(1000))

    def test_producer_may_exit_before_its_items_are_read(self):
        # 10 MiB in 1 KiB items, more than any pipe holds: the parent joins
        # the producer first, which deadlocks with the stdlib's queue.
        q = self.ctx.Queue()
        p = self.start(produce, q, 10 * 1024, b'x' * 1024)
        p.join(TIMEOUT)
        assert p.exitcode == 0, 'the producer did not finish on its own'
        items = [q.get(timeout=TIMEOUT) for _ in range(10 * 1024)]
        assert [i for _pid, i, _ in items] == list(range(10 * 1024))
        assert all(len(payload) == 1024 for _pid, _i, payload in items)
        assert q.empty()

    def test_many_producers_and_consumers_deliver_each_item_once(self):
        q, out = self.ctx.Queue(), self.ctx.Queue()
        producers = [self.start(produce, q, 500) for _ in range(3)]
        consumers = [self.start(consume, q, 750, out) for _ in range(2)]
        got = out.get(timeout=TIMEOUT) + out.get(timeout=TIMEOUT)
        for p in producers + consumers:
            p.join(TIMEOUT)
            assert p.exitcode == 0
        assert sorted(got) == sorted((p.pid, i, b'') for p in producers for i in range(500))

    def test_bounded_queue_blocks_and_raises_full(self):
        q = self.ctx.Queue(2)
        q.put(1)
        q.put_nowait(2)
        assert q.full() and q.qsize() == 2
        with pytest.raises(queue.Full):
            q.put(3, timeout=0.05)
        with pytest.raises(queue.Full):
            q.put_nowait(3)
        assert q.get(timeout=TIMEOUT) == 1
        q.put(3, timeout=TIMEOUT)
        assert [q.get(timeout=TIMEOUT), q.get(timeout=TIMEOUT)] == [2, 3]

    def test_empty_raises_after_timeout(self):
        q = self.ctx.Queue()
        assert q.empty() and q.qsize() == 0
        with pytest.raises(queue.Empty):
            q.get(timeout=0.05)
        with pytest.raises(queue.Empty):
            q.get_nowait()
        with pytest.raises(queue.Empty):
            q.get(False)

    def test_closed_queue_refuses_put_and_get(self):
        q = self.ctx.Queue()
        q.put('left')
        q.close()
        with pytest.raises(ValueError, match='is closed'):
            q.put('more')
        with pytest.raises(ValueError, match='is closed'):
            q.get()
        q.join_thread()

    def test_unpicklable_item_is_reported_and_the_queue_goes_on(self, capfd):
        q = self.ctx.Queue()
        q.put(Unpicklable())
        q.put('next')
        assert q.get(timeout=TIMEOUT) == 'next'
        assert 'refuses to be pickled' in capfd.readouterr().err

    def test_joinable_queue_join_waits_for_task_done(self):
        jq = self.ctx.JoinableQueue()
        for i in range(20):
            jq.put(i)
        p = self.start(work_and_mark_done, jq, 20)
        jq.join()
        p.join(TIMEOUT)
        assert p.exitcode == 0
        with pytest.raises(ValueError, match='too many times'):
            jq.task_done()

    def test_simple_queue_round_trip(self):
        inq, outq = self.ctx.SimpleQueue(), self.ctx.SimpleQueue()
        p = self.start(simple_echo, inq, outq)
        for item in ['a', 2, (3,), {'four': 4}]:
            inq.put(item)
            assert outq.get() == item
        inq.put(None)
        p.join(TIMEOUT)
        assert p.exitcode == 0 and inq.empty() and outq.empty()
        inq.close()
        outq.close()

    def test_simple_queue_many_producers_and_consumers_each_item_once(self):
        q, out = self.ctx.SimpleQueue(), self.ctx.SimpleQueue()
        producers = [self.start(produce, q, 400) for _ in range(3)]
        consumers = [self.start(consume_simple, q, 600, out) for _ in range(2)]
        got = out.get() + out.get()
        for p in producers + consumers:
            p.join(TIMEOUT)
            assert p.exitcode == 0
        assert sorted(got) == sorted((p.pid, i, b'') for p in producers for i in range(400))
        q.close()
        out.close()

    def test_reader_works_with_connection_wait(self):
        from multiprocessing.connection import wait
        q = self.ctx.Queue()
        assert wait([q._reader], 0.01) == []
        p = self.start(produce, q, 1)
        assert wait([q._reader], TIMEOUT) == [q._reader]
        assert q.get(timeout=TIMEOUT)[1] == 0
        p.join(TIMEOUT)


class FeederQueue(queues.Queue):
    """A subclass that takes over the feeder thread, as loky does."""

    fed = 0

    def _start_thread(self):
        FeederQueue.fed += 1
        super()._start_thread()


def test_subclass_overriding_the_feeder_gets_a_feeder_thread():
    q = FeederQueue(ctx=multiprocessing.get_context())
    q.put('via the feeder')
    assert q.get(timeout=TIMEOUT) == 'via the feeder'
    assert FeederQueue.fed == 1 and q._thread is not None
    q.close()
    q.join_thread()


class OwnFeederQueue(queues.Queue):
    def _start_thread(self):
        super()._start_thread()


class FeederJoinableQueue(queues.JoinableQueue):
    def _start_thread(self):
        super()._start_thread()


def test_a_feeder_subclass_keeps_slots_tasks_and_close():
    ctx = multiprocessing.get_context()
    q = OwnFeederQueue(1, ctx=ctx)
    q.put('one')
    with pytest.raises(queue.Full):
        q.put('two', timeout=0.05)
    assert q.get(timeout=TIMEOUT) == 'one'
    q.put(Unpicklable())  # reported by the feeder thread, its slot given back
    q.put('three', timeout=TIMEOUT)
    assert q.get(timeout=TIMEOUT) == 'three'
    q.close()
    with pytest.raises(ValueError, match='is closed'):
        q.put('four')
    q.join_thread()
    assert not q._thread.is_alive() and q._reader.closed and q._writer.closed

    jq = FeederJoinableQueue(ctx=ctx)
    for i in range(5):
        jq.put(i)
    assert [jq.get(timeout=TIMEOUT) for _ in range(5)] == list(range(5))
    for _ in range(5):
        jq.task_done()
    jq.join()
    with pytest.raises(ValueError, match='too many times'):
        jq.task_done()
    jq.close()
    jq.join_thread()


def test_plain_queue_needs_no_thread():
    q = multiprocessing.Queue()
    before = threading.active_count()
    q.put(1)
    assert q.get(timeout=TIMEOUT) == 1
    assert threading.active_count() == before
