"""Files written whole or not at all, and never through a link someone planted beside them.

The bytes go to a new file made exclusively (``O_EXCL``, an unpredictable name) in the target's own
folder, then take the target's name by a rename, which replaces a link at that name instead of
following it. An interrupted write leaves the target as it was and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def replacing_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """An open binary file that becomes ``path`` when the block ends without an error."""
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            yield file
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's 0600 would hide a shared folder's maps from others
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
