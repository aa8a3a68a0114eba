"""Objects bound to one host passed to a Pool task with workers on other
ranks: each must fail in get() with a RuntimeError naming the type. Prints
one line per object: label, exception type, message."""
import multiprocessing
import multiprocessing.shared_memory
import sys


def touch(obj):
    return 'reached the worker'


def make_lock():
    return multiprocessing.Lock()


def main():
    ctx = multiprocessing.get_context()
    shm = multiprocessing.shared_memory.SharedMemory(create=True, size=4096)
    listener_side, sender_side = multiprocessing.Pipe()
    samples = [
        ('Lock', ctx.Lock()),
        ('RLock', ctx.RLock()),
        ('Semaphore', ctx.Semaphore(2)),
        ('Event', ctx.Event()),
        ('Condition', ctx.Condition()),
        ('Barrier', ctx.Barrier(2)),
        ('Queue', ctx.Queue()),
        ('SimpleQueue', ctx.SimpleQueue()),
        ('JoinableQueue', ctx.JoinableQueue()),
        ('Value', ctx.Value('i', 3)),
        ('RawValue', ctx.RawValue('i', 3)),
        ('Array', ctx.Array('d', 4)),
        ('SharedMemory', shm),
        ('Connection', sender_side),
    ]
    try:
        with multiprocessing.Pool(2) as pool:
            for label, obj in samples:
                try:
                    got = pool.apply_async(touch, (obj,)).get(60)
                    print(f'{label}|{type(obj).__name__}|NO ERROR|{got}')
                except Exception as exc:
                    print(f'{label}|{type(obj).__name__}|{type(exc).__name__}|{exc}')
            try:
                got = pool.map(touch, [1, ctx.Lock(), 3], chunksize=1)
                print(f'in map|Lock|NO ERROR|{got}')
            except Exception as exc:
                print(f'in map|Lock|{type(exc).__name__}|{exc}')
            try:
                got = pool.apply_async(make_lock).get(60)
                print(f'in result|Lock|NO ERROR|{got}')
            except Exception as exc:
                print(f'in result|Lock|{type(exc).__name__}|{exc}')
            print(f'after|pool|ok|{pool.map(abs, [-1, -2])}')
    finally:
        shm.close()
        shm.unlink()
    sys.stdout.flush()


if __name__ == '__main__':
    main()
