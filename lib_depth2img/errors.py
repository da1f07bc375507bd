"""The one exception type a user can meet: every message says what happened and what to do."""


class Depth2ImgError(Exception):
    """A problem the user can fix: a missing or wrong file, bad input, an unsupported model."""
