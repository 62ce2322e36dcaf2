"""tmtvis.storage on local paths and on URIs (file:// exercises the URI code paths without a server; S3 itself
is covered by tests/cluster/test_object_storage.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tmtvis import storage
from tmtvis.errors import TmtvisError


@pytest.mark.parametrize("as_uri", [False, True])
def test_write_read_list_copy(tmp_path, as_uri):
    root = f"file://{tmp_path / 'store'}" if as_uri else tmp_path / "store"
    assert storage.is_uri(root) == as_uri and storage.is_empty_dir(root) and storage.files(root) == []
    storage.write_text(storage.join(root, "a", "b.txt"), "hello")
    storage.write_text(storage.join(root, "c.json"), "{}")
    assert storage.read_text(storage.join(root, "a", "b.txt")) == "hello"
    assert storage.files(root) == ["a/b.txt", "c.json"] and not storage.is_empty_dir(root)
    assert storage.is_file(storage.join(root, "c.json")) and storage.is_dir(storage.join(root, "a"))
    assert storage.name(root) == "store"
    local = storage.local_copy(root)
    assert (local / "a" / "b.txt").read_text() == "hello"
    assert storage.local_copy(root) == local  # cached (URI) or the path itself
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "x.txt").write_text("x")
    storage.upload(tmp_path / "up" / "x.txt", storage.join(root, "up", "x.txt"))
    assert storage.read_text(storage.join(root, "up", "x.txt")) == "x"
    down = storage.download(storage.join(root, "a"), tmp_path / "down")
    assert (down / "b.txt").read_text() == "hello"
    with pytest.raises(TmtvisError, match="missing.txt: not found"):
        storage.read_text(storage.join(root, "missing.txt"))


def test_resolve_and_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert storage.resolve("rel") == tmp_path / "rel" and storage.resolve("s3://b/p/") == "s3://b/p"
    assert storage.join("s3://b/p", "x", "y") == "s3://b/p/x/y" and storage.join(Path("/a"), "b") == Path("/a/b")
    with pytest.raises(TmtvisError, match=r"^nope://b/p: cannot open object storage"):
        storage.filesystem("nope://b/p")
