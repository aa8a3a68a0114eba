"""Writes pickles made by the stdlib's own pickler (protocols 2 to 5) as
extra seeds for fuzz_pickle_reader: the forms our writer never makes
(memo, frames, batches of APPENDS/SETITEMS, protocol 2 headers).
Run with /usr/bin/python3 from the source root:
    /usr/bin/python3 tests/fuzz/stdlib_pickle_seeds.py tests/fuzz/corpus/fuzz_pickle_reader
"""
import os
import pickle
import sys

VALUES = [
    None, True, -1, 255, 65536, -2**31, 2**63 - 1, 2**70, -2**100, 1.5, 'text', 'h\u00e9llo\U0001f600',
    b'bytes', b'x' * 300, (), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), [], [1, [2, [3]]],
    {'a': 1, 'b': [1, 2]}, list(range(1200)), {str(i): i for i in range(5)}, ['shared'] * 3,
]


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    n = 0
    shared = ['s']
    for proto in (2, 3, 4, 5):
        for value in VALUES + [[shared, shared], (shared, {'k': shared})]:
            with open(os.path.join(out_dir, 'stdlib-%d' % n), 'wb') as f:
                f.write(pickle.dumps(value, protocol=proto))
            n += 1


if __name__ == '__main__':
    main(sys.argv[1])
