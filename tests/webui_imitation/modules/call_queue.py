import threading

queue_lock = threading.Lock()


def wrap_queued_call(func):
    return func
