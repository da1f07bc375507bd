"""read_ahead: work done in a background thread, handed over in order, bounded, and stopped when the consumer is."""

import threading
import time

import pytest

from lib_depth2img.read_ahead import read_ahead


def _read_ahead_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "depth2img-read-ahead"]


def test_results_come_in_order_with_each_error_handed_over():
    def work(number: int) -> int:
        time.sleep(0.002 * (number % 3))  # finished out of step with the consumer
        if number == 3:
            raise ValueError("three is broken")
        return number * 10

    outcomes = list(read_ahead(range(7), work, ahead=2))
    assert [item for item, _, _ in outcomes] == list(range(7))
    assert [result for _, result, _ in outcomes] == [0, 10, 20, None, 40, 50, 60]
    errors = [error for _, _, error in outcomes]
    assert isinstance(errors[3], ValueError) and str(errors[3]) == "three is broken"
    assert all(error is None for number, error in enumerate(errors) if number != 3)
    assert not _read_ahead_threads()


@pytest.mark.parametrize("ahead", [1, 3])
def test_the_thread_works_at_most_ahead_items_past_the_consumer(ahead):
    """``ahead`` wait in the queue, and one more is in the thread's hands: no more are read."""
    started = []
    outcomes = read_ahead(range(20), lambda number: started.append(number) or number, ahead=ahead)
    for taken in range(1, 8):
        next(outcomes)
        time.sleep(0.3)  # time enough for the thread to run as far ahead as it may
        assert len(started) == taken + ahead + 1
    outcomes.close()


def test_closing_early_stops_the_thread_and_leaves_the_rest_unread():
    started = []
    outcomes = read_ahead(range(1000), lambda number: started.append(number) or number, ahead=2)
    assert [next(outcomes)[0] for _ in range(3)] == [0, 1, 2]
    assert _read_ahead_threads()
    outcomes.close()
    assert not _read_ahead_threads()
    assert len(started) <= 3 + 2 + 1


def test_an_error_in_the_consumer_stops_the_thread():
    with pytest.raises(KeyboardInterrupt):
        for item, _, _ in read_ahead(range(1000), lambda number: time.sleep(0.001), ahead=2):
            if item == 5:
                raise KeyboardInterrupt  # Ctrl-C arrives in the main thread while the other one reads
    assert not _read_ahead_threads()


def test_ahead_zero_works_each_item_when_asked_in_this_thread():
    where = []
    outcomes = read_ahead(range(3), lambda number: where.append(threading.current_thread()) or number, ahead=0)
    assert where == []  # nothing before it is asked for
    assert next(outcomes) == (0, 0, None) and where == [threading.current_thread()]
    assert list(outcomes) == [(1, 1, None), (2, 2, None)] and not _read_ahead_threads()
