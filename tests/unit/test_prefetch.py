"""The prefetching thread hands items over in order, passes errors on and stops when told."""

import threading

import pytest

from vaxreport.prefetch import prefetched

pytestmark = pytest.mark.unit


def test_items_arrive_in_order_from_another_thread():
    seen_threads = set()

    def items():
        for i in range(50):
            seen_threads.add(threading.current_thread().name)
            yield i

    assert list(prefetched(items())) == list(range(50))
    assert seen_threads == {"prefetch"}


def test_an_error_in_the_producer_is_raised_to_the_consumer_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise LookupError("source gone")

    got = []

    def consume():
        for item in prefetched(items()):
            got.append(item)

    with pytest.raises(LookupError, match="source gone"):
        consume()
    assert got == [1, 2]


def test_stopping_early_closes_the_producer():
    closed = threading.Event()

    def items():
        try:
            yield from range(10_000)
        finally:
            closed.set()

    stream = prefetched(items(), depth=1)
    assert next(stream) == 0
    stream.close()
    assert closed.wait(5)
