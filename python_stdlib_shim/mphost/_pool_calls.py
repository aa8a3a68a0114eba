"""The calls of mphost.Pool (apply and the map family) with the options that
travel with each call. A mixin placed before multiprocessing.pool.Pool in
mphost.Pool's bases: every method takes its own keyword options, handles
them and hands the rest to the next class with super()."""

__all__ = []


class PoolCalls:
    """Per-call options of mphost.Pool's apply/map family."""
