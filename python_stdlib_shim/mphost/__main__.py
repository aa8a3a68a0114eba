"""The mphost package's command-line tools: ``mphost -m mphost COMMAND``.

    mphost -m mphost inspect PID [--watch [SECONDS]] [--json] [--once]

``inspect`` shows a running mphost program (the tree PID belongs to): its
processes, and the channels, locks and shared segments each created, read
from the program's registry in shared memory without disturbing it. The
installed ``mphost-inspect`` is the same command. See ``mphost._inspect``.
"""

import argparse
import sys


def _positive_seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'invalid number of seconds: {text!r}') from None
    if not value > 0 or value != value or value == float('inf'):
        raise argparse.ArgumentTypeError(f'the interval must be a positive number of seconds, not {text}')
    return value


def _pid(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'invalid pid: {text!r}') from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f'invalid pid: {text!r}')
    return value


def _add_inspect_arguments(parser):
    parser.add_argument('pid', type=_pid, metavar='PID',
                        help='a process of the mphost program to show (its root or any of its children)')
    parser.add_argument('--watch', nargs='?', const=1.0, type=_positive_seconds, metavar='SECONDS',
                        help='refresh like top every SECONDS (default 1) with messages/s per channel; '
                             'Ctrl-C quits; ends with the program')
    parser.add_argument('--json', action='store_true',
                        help='print the state as JSON (with --watch: one object per line)')
    parser.add_argument('--once', action='store_true',
                        help='print one frame and exit (with --watch: after two samples, to show rates)')


def build_parser(prog=None):
    parser = argparse.ArgumentParser(
        prog=prog or 'mphost -m mphost',
        description="Tools of mphost's opt-in `mphost` package.")
    commands = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
    inspect = commands.add_parser(
        'inspect', help='show the processes, channels, locks and segments of a running mphost program',
        description='Show a running mphost program of your user: its processes as a tree, and under '
                    'each the channels, locks and shared segments it created, with the holder of a '
                    'lock others wait for and full queues called out. Read-only: the program is '
                    'not stopped, signalled or traced, and its locks are not taken.')
    _add_inspect_arguments(inspect)
    return parser


def main(argv=None, prog=None):
    args = build_parser(prog).parse_args(argv)
    if args.command == 'inspect':
        from mphost._inspect import run
        return run(args.pid, watch=args.watch, as_json=args.json, once=args.once)
    return 2


def inspect_main(argv=None):
    """The ``mphost-inspect`` shortcut: the inspect command on its own."""
    parser = argparse.ArgumentParser(
        prog='mphost-inspect',
        description='Show a running mphost program (same as `mphost -m mphost inspect`).')
    _add_inspect_arguments(parser)
    args = parser.parse_args(argv)
    from mphost._inspect import run
    return run(args.pid, watch=args.watch, as_json=args.json, once=args.once)


if __name__ == '__main__':
    sys.exit(main())
