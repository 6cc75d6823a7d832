"""Writing files so that a failed write never destroys the previous one."""
import os
import tempfile

import numpy as np


def _umask():
    """The process's umask: read from /proc where Linux shows it, else set
    and restored (which other threads could briefly see)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_savez(path, **arrays):
    """``numpy.savez`` to ``path`` atomically: written to a temporary file in
    the same directory, flushed to disk, then renamed over ``path``.  On any
    error the temporary file is removed and an existing ``path`` is left as
    it was.  The file gets the mode a newly created file gets
    (``0o666 & ~umask``), not the temporary file's 0600."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".fastopt-", suffix=".npz",
                               dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):  # POSIX
                os.fchmod(f.fileno(), 0o666 & ~_umask())
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
