"""``modules/errors.py``: ``report`` prints what a hook raised, with its traceback, and the WebUI goes on."""

import sys
import traceback

reported: list[str] = []  # what was reported, for tests to read; the real module only prints


def report(message, *, exc_info=False):
    reported.append(message)
    print(message, file=sys.stderr)
    if exc_info:
        traceback.print_exc()
