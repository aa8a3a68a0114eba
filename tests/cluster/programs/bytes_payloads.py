"""Large bytes, bytearray and memoryview-backed payloads through a Pool, both
ways, with types, lengths and digests compared."""
import hashlib
import multiprocessing

MIB = 1 << 20


def make_bytes(n, fill):
    return bytes([fill]) * n


def make_bytearray(n, fill):
    out = bytearray(n)
    out[::4096] = bytes([fill]) * len(out[::4096])
    return out


def measure(blob):
    return type(blob).__name__, len(blob), hashlib.sha256(blob).hexdigest()[:16]


def reverse(blob):
    return blob[::-1]


def pieces(n):
    return [bytes([i]) * (n // 4) for i in range(4)]


def line(label, blob):
    print(label, type(blob).__name__, len(blob), hashlib.sha256(blob).hexdigest()[:16])


def main():
    with multiprocessing.Pool(2) as pool:
        line('bytes 1 MiB result', pool.apply(make_bytes, (MIB, 7)))
        line('bytes 48 MiB result', pool.apply(make_bytes, (48 * MIB, 9)))
        r = pool.apply(make_bytearray, (32 * MIB, 5))
        line('bytearray 32 MiB result', r)
        r[0] = 1
        print('bytearray result writable', r[0])
        print('sent bytes 40 MiB', pool.apply(measure, (b'\x03' * (40 * MIB),)))
        print('sent bytearray 16 MiB', pool.apply(measure, (bytearray(b'ab') * (8 * MIB),)))
        line('reversed 8 MiB', pool.apply(reverse, (bytes(range(256)) * (32 * 1024),)))
        print('list of pieces', [measure(p) for p in pool.apply(pieces, (16 * MIB,))])
        print('many small', pool.map(measure, [bytes([i]) * (i * 1000) for i in range(10)], chunksize=3))
        print('str 8 MiB', len(pool.apply(str.upper, ('abc' * (MIB * 8 // 3),))))


if __name__ == '__main__':
    main()
