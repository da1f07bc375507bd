"""Work done ahead in a background thread: the CLI decodes and prepares the next pictures while the estimator
runs on the ones before. Decoding (Pillow), the float conversion (numpy) and the resize (torch) spend most of
their time outside the GIL, so the two overlap.

At most ``ahead`` results wait, so memory stays bounded however many pictures there are; they come in the
order of the items. Closing the generator (the consumer is done, raised, or was interrupted) stops the thread
and waits for it: no thread outlives the run.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

_END = object()
_POLL_SECONDS = 0.1  # how soon a thread waiting for room in the queue notices that it is no longer wanted


def attempt(work: Callable[[Item], Result], item: Item) -> tuple[Result | None, Exception | None]:
    """``(work(item), None)``, or ``(None, what it raised)``: the consumer decides what an error means."""
    try:
        return work(item), None
    except Exception as error:  # handed to the consumer, which raises again what it does not expect
        return None, error


def read_ahead(items: Iterable[Item], work: Callable[[Item], Result],
               ahead: int) -> Iterator[tuple[Item, Result | None, Exception | None]]:
    """``(item, result, error)`` for each item in order (``attempt``), worked out up to ``ahead`` items before the
    consumer asks for them, in a background thread; with ``ahead`` 0, each when it is asked for, in this thread."""
    if ahead < 1:
        yield from ((item, *attempt(work, item)) for item in items)
        return
    results: queue.Queue = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def hand_over(outcome) -> bool:
        while not stop.is_set():
            try:
                results.put(outcome, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        for item in items:
            if stop.is_set() or not hand_over((item, *attempt(work, item))):
                return
        hand_over(_END)

    thread = threading.Thread(target=produce, name="depth2img-read-ahead", daemon=True)
    thread.start()
    try:
        while (outcome := results.get()) is not _END:
            yield outcome
    finally:
        stop.set()
        thread.join()
