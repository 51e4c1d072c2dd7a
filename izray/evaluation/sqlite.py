"""Opening izray's SQLite files (response cache, call ledger) safely where they live.

SQLite's WAL mode keeps its index in shared memory beside the database, which only works
when every process using the file is on the same machine: on a network file system (NFS,
EFS, SMB, Lustre, ...) WAL can corrupt the database or hand a reader stale pages. There the
files are opened with the rollback journal (``journal_mode=DELETE``), which relies only on
POSIX locks, at some cost in write speed. The file system is read from ``/proc/self/mountinfo``
(Linux; elsewhere nothing is detected and WAL is used).

Example:
    >>> fs_type("/proc")
    'proc'
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

log = logging.getLogger("izray")

#: File system types on which WAL is unsafe (several hosts share the file, or the locking
#: and shared memory are emulated).
NETWORK_FS = frozenset({
    "nfs", "nfs4", "cifs", "smb", "smb3", "smbfs", "afs", "9p", "lustre", "glusterfs",
    "fuse.glusterfs", "ceph", "fuse.ceph", "fuse.sshfs", "gpfs", "beegfs", "fuse.s3fs",
    "fuse.gcsfuse", "fuse.juicefs", "fuse.efs", "virtiofs",
})
MOUNTINFO = "/proc/self/mountinfo"


def _unescape(field: str) -> str:
    """Mount points in mountinfo escape space, tab, newline and backslash as octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def fs_type(path: str | Path, mountinfo: str | None = None) -> str | None:
    """The type of the file system ``path`` is on (the longest matching mount point), or
    None when it cannot be told.

    Args:
        path: A file or directory (it need not exist yet).
        mountinfo: Text of ``/proc/self/mountinfo`` (read from the system by default).
    """
    if mountinfo is None:
        try:
            mountinfo = Path(MOUNTINFO).read_text()
        except OSError:
            return None
    p, rest = Path(os.path.abspath(path)), []
    while not p.exists() and p != p.parent:  # resolve links in the part that exists
        p, rest = p.parent, [p.name, *rest]
    target = os.path.join(os.path.realpath(p), *rest)
    best, kind = -1, None
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if " - " not in line or len(fields) < 5:
            continue
        mount = _unescape(fields[4])
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > best:
            best, kind = len(mount), line.split(" - ", 1)[1].split(" ")[0]
    return kind


def journal_mode(path: str | Path) -> str:
    """``WAL`` on a local file system, ``DELETE`` (the rollback journal) on a network one."""
    return "DELETE" if fs_type(path) in NETWORK_FS else "WAL"


def connect(path: Path, what: str) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode with the journal its file system can carry.

    Args:
        path: The database file; its directory must exist.
        what: What the file is, for the log line (``"the response cache"``).

    Raises:
        sqlite3.Error: as ``sqlite3.connect`` and the pragmas raise it (callers turn it into
            a :class:`~izray.errors.RunStateError` that says what to fix).
    """
    kind = fs_type(path.parent)  # read /proc/self/mountinfo once
    mode = "DELETE" if kind in NETWORK_FS else "WAL"
    db = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
    db.execute(f"PRAGMA journal_mode={mode}")
    if mode == "DELETE":
        log.info("%s %s is on a network file system (%s): using SQLite's rollback journal, "
                 "not WAL (unsafe there)", what, path, kind)
    return db
