"""host-local's on-disk store, byte-compatible with the reference plugin.

<dataDir>/<network>/<ip> holds "containerID\\r\\nifname" (older files: the id alone),
last_reserved_ip.<rangeSet> holds the round-robin cursor, and `lock` is flock'ed
around every session, so the Go host-local and podnet can share a directory.

Unlike the reference, lookups by container do not read every file: see FileStore.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import StoreUnavailable
from .store import Handle, IPAddr

LAST_RESERVED = "last_reserved_ip."
INDEX_DIR = ".podnet"
JOURNAL_FILE = "journal"     # "+ ip cid [ifname]" / "- ip" lines; compacted to a snapshot
DIRSTAT_FILE = "dirstat"     # the directory's (inode, mtime_ns, size) after podnet's last change
DEFAULT_DATA_DIR = "/var/lib/cni/networks"
COMPACT_MIN_BYTES = 64 * 1024

DirStat = tuple[int, int, int]


class _Index(dict[str, Handle]):
    """ip → holder, with the ips of each container id beside it: finding a container's
    addresses (every ADD and DEL asks) must not walk every lease — with 1000 pods on a node that
    walk was most of the IPAM's growth.  Only item assignment and pop change it."""

    def __init__(self) -> None:
        super().__init__()
        self.by_cid: dict[str, set[str]] = {}

    def __setitem__(self, ip: str, handle: Handle) -> None:
        old = self.get(ip)
        if old is not None:
            self._forget(ip, old)
        super().__setitem__(ip, handle)
        self.by_cid.setdefault(handle.container_id, set()).add(ip)

    def pop(self, ip: str, default: Handle | None = None) -> Handle | None:  # type: ignore[override]
        handle = super().pop(ip, None)
        if handle is None:
            return default
        self._forget(ip, handle)
        return handle

    def _forget(self, ip: str, handle: Handle) -> None:
        ips = self.by_cid.get(handle.container_id)
        if ips is not None:
            ips.discard(ip)
            if not ips:
                del self.by_cid[handle.container_id]


@dataclass
class _Cached:
    """A process's warm view of one directory: valid while the journal has this size."""
    journal_size: int
    index: _Index


# process-wide cache (the agent keeps it warm across requests); guarded by the flock of
# each directory for its contents and by _cache_lock for the dict itself
_cache: dict[str, _Cached] = {}
_cache_lock = threading.Lock()


def _parse_handle(text: str) -> Handle:
    cid, _, ifname = text.strip().partition("\r\n")
    return Handle(cid.strip(), ifname.strip())


def _is_reservation(name: str) -> bool:
    return not (name == "lock" or name.startswith((LAST_RESERVED, ".")))


def _journal_line(ip: str, handle: Handle | None) -> str:
    if handle is None:
        return f"- {ip}\n"
    return f"+ {ip} {handle.container_id} {handle.ifname}".rstrip() + "\n"


def _replay(text: str, index: _Index) -> None:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "+":
            index[parts[1]] = Handle(parts[2], parts[3] if len(parts) > 3 else "")
        elif len(parts) == 2 and parts[0] == "-":
            index.pop(parts[1], None)


class FileSession:
    def __init__(self, path: str, index: _Index) -> None:
        self.path = path
        self._index = index
        self.changes: list[str] = []   # journal lines, in order

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def get(self, handle: Handle) -> list[IPAddr]:
        ips = self._index.by_cid.get(handle.container_id, ())
        return sorted((ipaddress.ip_address(ip) for ip in ips if self._index[ip].matches(handle)), key=str)

    def reserve(self, ip: IPAddr, handle: Handle, range_id: int) -> bool:
        """Create the lease file with its content in one step: written aside, then hard-linked
        into place (link fails if the name exists).  A process killed half-way leaves no empty
        lease that no DEL could ever match — it did, with O_EXCL-then-write, under kill -9."""
        tmp = os.path.join(self.path, INDEX_DIR, f"new-{ip}-{os.getpid()}-{threading.get_ident()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, f"{handle.container_id}\r\n{handle.ifname}".encode())
        finally:
            os.close(fd)
        try:
            os.link(tmp, self._file(str(ip)))
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        with open(self._file(f"{LAST_RESERVED}{range_id}"), "w") as f:
            f.write(str(ip))
        self._index[str(ip)] = handle
        self.changes.append(_journal_line(str(ip), handle))
        return True

    def release(self, handle: Handle) -> list[IPAddr]:
        gone = self.get(handle)
        for ip in gone:
            self.release_ip(ip)
        return gone

    def release_ip(self, ip: IPAddr) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._file(str(ip)))
        if self._index.pop(str(ip), None) is not None:
            self.changes.append(_journal_line(str(ip), None))

    def holders(self) -> dict[IPAddr, Handle]:
        return {ipaddress.ip_address(ip): h for ip, h in self._index.items()}

    def last_reserved(self, range_id: int) -> IPAddr | None:
        try:
            with open(self._file(f"{LAST_RESERVED}{range_id}")) as f:
                return ipaddress.ip_address(f.read().strip())
        except (OSError, ValueError):
            return None


class FileStore:
    """Sessions over one network's directory.

    Finding a container's addresses must not read every file (the reference does, and
    slows down as pods accumulate), and no step may grow with the number of pods.  So
    podnet keeps an index as an append-only journal in `.podnet/`, and records the
    directory's (inode, mtime, size) after each of its changes: when the directory no
    longer matches, someone else (the Go host-local) changed it, and the index is
    rebuilt from the files once.  A warm process (the agent) replays only journal lines
    it has not seen, usually none.
    """

    def __init__(self, data_dir: str, network: str) -> None:
        self.path = os.path.join(data_dir or DEFAULT_DATA_DIR, network)
        self.meta = os.path.join(self.path, INDEX_DIR)

    def _dir_stat(self) -> DirStat:
        st = os.stat(self.path)
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _recorded_stat(self) -> DirStat | None:
        try:
            with open(os.path.join(self.meta, DIRSTAT_FILE)) as f:
                a, b, c = (int(x) for x in f.read().split())
            return (a, b, c)
        except (OSError, ValueError):
            return None

    def _scan(self) -> _Index:
        """Every reservation file, read: the slow path, after a foreign change."""
        index = _Index()
        for name in os.listdir(self.path):
            if not _is_reservation(name):
                continue
            try:
                with open(os.path.join(self.path, name), "rb") as f:
                    index[name] = _parse_handle(f.read().decode(errors="replace"))
            except OSError:
                continue
        return index

    def _load(self) -> tuple[_Index, int, bool]:
        """(index, journal size it reflects, whether the journal must be rewritten)."""
        journal = os.path.join(self.meta, JOURNAL_FILE)
        try:
            size = os.stat(journal).st_size
        except FileNotFoundError:
            size = -1
        if size < 0 or self._recorded_stat() != self._dir_stat():
            return self._scan(), size, True
        with _cache_lock:
            cached = _cache.get(self.path)
        if cached is not None and cached.journal_size == size:
            return cached.index, size, False
        with open(journal, "rb") as f:
            if cached is not None and cached.journal_size < size:
                f.seek(cached.journal_size)
                index = cached.index
            else:
                index = _Index()
            _replay(f.read().decode(errors="replace"), index)
        return index, size, False

    def _write_journal(self, index: _Index, size: int, changes: list[str], rewrite: bool) -> int:
        """Append the session's lines, or write a fresh snapshot; the journal's new size."""
        journal = os.path.join(self.meta, JOURNAL_FILE)
        if rewrite or size > max(COMPACT_MIN_BYTES, 8 * 64 * len(index)):
            tmp = f"{journal}.{os.getpid()}.{threading.get_ident()}"
            text = "".join(_journal_line(ip, h) for ip, h in index.items()).encode()
            with open(tmp, "wb") as f:
                f.write(text)
            os.replace(tmp, journal)
            return len(text)
        data = "".join(changes).encode()
        with open(journal, "ab") as f:
            f.write(data)
        return size + len(data)

    def _record_stat(self) -> None:
        tmp = os.path.join(self.meta, f"{DIRSTAT_FILE}.{os.getpid()}.{threading.get_ident()}")
        with open(tmp, "w") as f:
            f.write("%d %d %d" % self._dir_stat())
        os.replace(tmp, os.path.join(self.meta, DIRSTAT_FILE))

    @contextlib.contextmanager
    def session(self) -> Iterator[FileSession]:
        try:
            os.makedirs(self.meta, mode=0o755, exist_ok=True)
            lock_fd = os.open(os.path.join(self.path, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise StoreUnavailable(f"host-local data dir {self.path}: {e.strerror}") from None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            index, size, rewrite = self._load()
            sess = FileSession(self.path, index)
            try:
                yield sess
            except BaseException:
                with _cache_lock:  # the index may hold half a session: rebuild next time
                    _cache.pop(self.path, None)
                raise
            if sess.changes or rewrite:
                size = self._write_journal(index, size, sess.changes, rewrite)
                self._record_stat()
            with _cache_lock:
                _cache[self.path] = _Cached(size, index)
        except OSError as e:
            if e.errno in (errno.EROFS, errno.ENOSPC, errno.EACCES):
                raise StoreUnavailable(f"host-local data dir {self.path}: {e.strerror}") from None
            raise
        finally:
            os.close(lock_fd)
