"""Where run outputs live: a local path or an object-storage URI (s3://bucket/prefix), through pyarrow filesystems.

S3 takes its endpoint from AWS_ENDPOINT_URL and its credentials from the standard AWS variables (or the
instance's role), exactly as pyarrow and boto3 resolve them.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from pyarrow import fs as pafs

from tmtvis.errors import TmtvisError
from tmtvis.io_utils import atomic_write_text

Location = str | Path


def is_uri(location: Location) -> bool:
    return "://" in str(location)


def resolve(location: Location) -> str | Path:
    """A URI unchanged (no trailing slash), a local path made absolute."""
    if is_uri(location):
        return str(location).rstrip("/")
    return Path(location).expanduser().resolve()


def join(location: Location, *parts: str) -> str | Path:
    if is_uri(location):
        return "/".join([str(location).rstrip("/"), *parts])
    return Path(location).joinpath(*parts)


def name(location: Location) -> str:
    return str(location).rstrip("/").rsplit("/", 1)[-1]


def filesystem(location: Location) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path inside it); a one-line error for an unknown scheme or missing bucket access."""
    if not is_uri(location):
        return pafs.LocalFileSystem(), str(Path(location).expanduser().resolve())
    try:
        return pafs.FileSystem.from_uri(str(location))
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise TmtvisError(f"{location}: cannot open object storage ({_first_line(e)})") from None


def to_location(fs: pafs.FileSystem, path: str) -> str | Path:
    """The inverse of `filesystem`: a filesystem path back to a local Path or a URI."""
    if isinstance(fs, pafs.LocalFileSystem):
        return Path(path)
    return f"{fs.type_name}://{path}"


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _info(location: Location) -> pafs.FileInfo:
    fs, path = filesystem(location)
    try:
        return fs.get_file_info(path)
    except OSError as e:
        raise TmtvisError(f"{location}: {_first_line(e)}") from None


def is_file(location: Location) -> bool:
    return _info(location).type == pafs.FileType.File


def is_dir(location: Location) -> bool:
    return _info(location).type == pafs.FileType.Directory


def is_empty_dir(location: Location) -> bool:
    """True if nothing is stored under `location` (also when it does not exist)."""
    fs, path = filesystem(location)
    try:
        return not fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except OSError as e:
        raise TmtvisError(f"{location}: {_first_line(e)}") from None


def files(location: Location) -> list[str]:
    """Paths (relative to `location`, '/'-separated) of every file stored under it."""
    fs, path = filesystem(location)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    except OSError as e:
        raise TmtvisError(f"{location}: {_first_line(e)}") from None
    return sorted(i.path[len(path):].lstrip("/") for i in infos if i.type == pafs.FileType.File)


def read_text(location: Location) -> str:
    fs, path = filesystem(location)
    try:
        with fs.open_input_stream(path) as f:
            return f.read().decode("utf-8")
    except FileNotFoundError:
        raise TmtvisError(f"{location}: not found") from None
    except OSError as e:
        raise TmtvisError(f"{location}: {_first_line(e)}") from None


def _parent_dir(fs: pafs.FileSystem, path: str) -> None:
    """Hierarchical filesystems need the parent directory; object stores have no directories to make."""
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)


def write_text(location: Location, text: str) -> None:
    """Write a small file whole (locally atomic; an object store's PUT is atomic by itself)."""
    if not is_uri(location):
        atomic_write_text(location, text)
        return
    fs, path = filesystem(location)
    try:
        _parent_dir(fs, path)
        with fs.open_output_stream(path) as f:
            f.write(text.encode("utf-8"))
    except OSError as e:
        raise TmtvisError(f"{location}: cannot write ({_first_line(e)})") from None


def upload(local: Path, location: Location) -> None:
    """Copy a local file or directory tree to `location`."""
    fs, path = filesystem(location)
    try:
        _parent_dir(fs, path)
        if local.is_dir() and isinstance(fs, pafs.LocalFileSystem):  # copy_files does not create it
            fs.create_dir(path, recursive=True)
        pafs.copy_files(str(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    except OSError as e:
        raise TmtvisError(f"{location}: upload failed ({_first_line(e)})") from None


def download(location: Location, local: Path) -> Path:
    """Copy everything under `location` into the local directory `local`."""
    fs, path = filesystem(location)
    local.mkdir(parents=True, exist_ok=True)
    try:
        pafs.copy_files(path, str(local), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    except FileNotFoundError:
        raise TmtvisError(f"{location}: not found") from None
    except OSError as e:
        raise TmtvisError(f"{location}: download failed ({_first_line(e)})") from None
    return local


def local_copy(location: Location) -> Path:
    """A local directory holding what is under `location`: the path itself, or a per-URI cache for a URI.

    The cache is filled once (marked complete by a file written last), so each process downloads at most once.
    """
    if not is_uri(location):
        return Path(location)
    key = hashlib.sha256(str(location).encode()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / f"tmtvis-cache-{os.getuid()}" / key
    done = cache / ".complete"
    if not done.is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        part = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=cache.parent))
        download(location, part)
        (part / ".complete").write_text(str(location))
        try:
            os.replace(part, cache)
        except OSError:  # another process filled the cache first
            pass
    return cache
