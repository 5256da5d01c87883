"""The one error type every reader and writer raises."""

from __future__ import annotations

import contextlib
import errno
import stat
from pathlib import Path
from typing import Iterator


_MISSING = (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)  # what Path.exists() reports as absent


class MediaError(ValueError):
    """A file that cannot be read or written; the message starts with the file name."""


@contextlib.contextmanager
def media_errors(path: str | Path, what: str, write: bool = False) -> Iterator[None]:
    """Turn any decoder/encoder exception inside the block into one :class:`MediaError` line.

    Args:
        path: the file, named first in the message.
        what: what the file should have been, e.g. ``"a valid audio file"``.
        write: the block writes ``path``: a missing file means its folder is missing (not a missing input).
    """
    try:
        yield
    except MediaError:
        raise
    except FileNotFoundError:
        if write:
            raise MediaError(f"{Path(path).name}: cannot write it: no such folder {Path(path).parent} "
                             "(create it first)") from None
        raise MediaError(f"{Path(path).name}: no such file ({path})") from None
    except Exception as e:  # noqa: BLE001 - decoders raise anything; the contract is one clear line
        detail = " ".join(str(e).split()) or type(e).__name__
        raise MediaError(f"{Path(path).name}: not {what} ({detail})") from None


def check_readable(path: str | Path) -> Path:
    """The path, if it names a non-empty file; else a :class:`MediaError` (one ``stat`` call)."""
    p = as_path(path)
    try:
        st = p.stat()
    except OSError as e:
        if e.errno not in _MISSING:
            raise
        raise MediaError(f"{p.name}: no such file ({p})") from None
    if not stat.S_ISREG(st.st_mode):
        raise MediaError(f"{p.name}: not a file ({p})")
    if st.st_size == 0:
        raise MediaError(f"{p.name}: empty file ({p})")
    return p


def as_path(path: str | Path) -> Path:
    """``path`` as a :class:`~pathlib.Path`, without building a new one for a ``Path`` (a per-file cost)."""
    return path if isinstance(path, Path) else Path(path)


def check_extension(path: str | Path, allowed: dict[str, str], kind: str) -> str:
    """The lower-case extension of ``path`` if it is one of ``allowed`` (for ``kind``); else a :class:`MediaError`."""
    ext = as_path(path).suffix.lower()
    if ext not in allowed:
        raise MediaError(
            f"{Path(path).name}: unsupported {kind} format {ext or '(no extension)'}; "
            f"use one of {', '.join(sorted(allowed))}"
        )
    return ext
