"""Writing a file so that readers see the old file or the whole new one, never a torn one (fairseq-free)."""
import os
import tempfile
from contextlib import contextmanager
from typing import BinaryIO, Iterator


@contextmanager
def atomic_file(path: str) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` when the block ends without an error.

    The data is fsync'd before the rename (else a crash can leave an empty file under the final
    name), and the file gets the permissions a plain ``open`` would (mkstemp creates it 0600).
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    with atomic_file(path) as f:
        f.write(text.encode("utf-8"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
