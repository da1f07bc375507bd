def wrap_queued_call(func):
    return func
