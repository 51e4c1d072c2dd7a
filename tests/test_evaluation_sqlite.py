"""Tests of izray.evaluation.sqlite: which file system a path is on, and the journal used."""

from __future__ import annotations

import logging

from izray.evaluation import sqlite as izsqlite
from izray.evaluation.cache import CachedAnswer, ResponseCache
from izray.evaluation.ledger import CallRecord, Ledger

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /shared rw,relatime shared:20 - nfs4 fs-1.efs.aws.com:/ rw,vers=4.1
41 40 8:2 / /shared/local\\040disk rw shared:21 - xfs /dev/sdb rw
42 22 0:36 / /mnt/smb rw - cifs //srv/x rw
garbage line
"""


def test_the_longest_mount_point_wins(tmp_path):
    assert izsqlite.fs_type("/shared/results/run1/ledger.sqlite", MOUNTINFO) == "nfs4"
    assert izsqlite.fs_type("/shared/local disk/cache.sqlite", MOUNTINFO) == "xfs"
    assert izsqlite.fs_type("/sharedish/x", MOUNTINFO) == "ext4"  # not under /shared
    assert izsqlite.fs_type("/mnt/smb/a", MOUNTINFO) == "cifs"
    assert izsqlite.fs_type("/x", "") is None


def test_this_machines_tmp_is_local_and_gets_wal(tmp_path):
    kind = izsqlite.fs_type(tmp_path)
    assert kind is not None and kind not in izsqlite.NETWORK_FS
    cache = ResponseCache(tmp_path / "cache.sqlite")
    try:
        assert cache._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        cache.close()


def test_on_a_network_file_system_the_rollback_journal_is_used(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(izsqlite, "fs_type", lambda path, mountinfo=None: "nfs4")
    with caplog.at_level(logging.INFO, logger="izray"):
        cache = ResponseCache(tmp_path / "cache.sqlite")
        ledger = Ledger(tmp_path / "ledger.sqlite")
    try:
        for db in (cache._db, ledger._db):
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        cache.put_many({"k": CachedAnswer("an answer", 3, 1)})
        assert cache.get_many(["k"])["k"].text == "an answer"
        assert ledger.record([CallRecord("c1", "task", "k", True, "an answer", 3, 1, 1)]) == 1
        assert ledger.total().calls == 1
    finally:
        cache.close()
        ledger.close()
    assert not (tmp_path / "cache.sqlite-wal").exists()
    assert any("network file system (nfs4)" in r.getMessage() for r in caplog.records)
