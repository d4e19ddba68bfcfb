"""host-local's on-disk store, byte-compatible with the reference plugin.

<dataDir>/<network>/<ip> holds "containerID\\r\\nifname" (older files: the id alone),
last_reserved_ip.<rangeSet> holds the round-robin cursor, and `lock` is flock'ed
around every session, so the Go host-local and podnet can share a directory.

Unlike the reference, lookups by container do not read every file: an index
(`.podnet/index.json`, ip -> handle) is reconciled against a directory listing,
reading only files it has not seen (e.g. written by the Go plugin).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import json
import os
import threading
from typing import Iterator

from .errors import StoreUnavailable
from .store import Handle, IPAddr

LAST_RESERVED = "last_reserved_ip."
INDEX_DIR = ".podnet"
INDEX_FILE = "index.json"
GENERATION_FILE = "generation"
DEFAULT_DATA_DIR = "/var/lib/cni/networks"

# process-wide cache of each directory's (generation, index): the agent keeps it warm.
# Every podnet session that changes the directory bumps the generation, so a cache
# is used only if no other podnet process (an in-process launcher) wrote since.
_cache: dict[str, tuple[int, dict[str, Handle]]] = {}
_cache_lock = threading.Lock()


def _parse_handle(text: str) -> Handle:
    cid, _, ifname = text.strip().partition("\r\n")
    return Handle(cid.strip(), ifname.strip())


def _is_reservation(name: str) -> bool:
    return not (name == "lock" or name.startswith(LAST_RESERVED) or name.startswith("."))


class FileSession:
    def __init__(self, path: str, index: dict[str, Handle]) -> None:
        self.path = path
        self._index = index
        self.dirty = False

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def get(self, handle: Handle) -> list[IPAddr]:
        return sorted((ipaddress.ip_address(ip) for ip, h in self._index.items() if h.matches(handle)), key=str)

    def reserve(self, ip: IPAddr, handle: Handle, range_id: int) -> bool:
        try:
            fd = os.open(self._file(str(ip)), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        try:
            os.write(fd, f"{handle.container_id}\r\n{handle.ifname}".encode())
        finally:
            os.close(fd)
        with open(self._file(f"{LAST_RESERVED}{range_id}"), "w") as f:
            f.write(str(ip))
        self._index[str(ip)] = handle
        self.dirty = True
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
            self.dirty = True

    def holders(self) -> dict[IPAddr, Handle]:
        return {ipaddress.ip_address(ip): h for ip, h in self._index.items()}

    def last_reserved(self, range_id: int) -> IPAddr | None:
        try:
            with open(self._file(f"{LAST_RESERVED}{range_id}")) as f:
                return ipaddress.ip_address(f.read().strip())
        except (OSError, ValueError):
            return None


class FileStore:
    def __init__(self, data_dir: str, network: str) -> None:
        self.path = os.path.join(data_dir or DEFAULT_DATA_DIR, network)

    def _generation(self) -> int:
        try:
            with open(os.path.join(self.path, INDEX_DIR, GENERATION_FILE)) as f:
                return int(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0

    def _load_index(self, gen: int) -> tuple[dict[str, Handle], bool]:
        """The index reconciled with the directory; True when it had to change."""
        with _cache_lock:
            entry = _cache.get(self.path)
        cached = entry[1] if entry is not None and entry[0] == gen else None
        index: dict[str, Handle]
        if cached is not None:
            index = dict(cached)
        else:
            try:
                with open(os.path.join(self.path, INDEX_DIR, INDEX_FILE)) as f:
                    index = {ip: Handle(*h) for ip, h in json.load(f).items()}
            except (OSError, ValueError, TypeError):
                index = {}
        names = {n for n in os.listdir(self.path) if _is_reservation(n)}
        changed = False
        for stale in set(index) - names:
            del index[stale]
            changed = True
        for new in names - set(index):
            try:
                with open(os.path.join(self.path, new), "rb") as f:
                    index[new] = _parse_handle(f.read().decode(errors="replace"))
                changed = True
            except OSError:
                continue
        return index, changed or cached is None

    def _save_index(self, index: dict[str, Handle], gen: int) -> None:
        d = os.path.join(self.path, INDEX_DIR)
        os.makedirs(d, exist_ok=True)
        for name, text in ((INDEX_FILE, json.dumps({ip: [h.container_id, h.ifname] for ip, h in index.items()})),
                           (GENERATION_FILE, str(gen))):
            tmp = os.path.join(d, f"{name}.{os.getpid()}.{threading.get_ident()}")
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, os.path.join(d, name))

    @contextlib.contextmanager
    def session(self) -> Iterator[FileSession]:
        try:
            os.makedirs(self.path, mode=0o755, exist_ok=True)
            lock_fd = os.open(os.path.join(self.path, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise StoreUnavailable(f"host-local data dir {self.path}: {e.strerror}") from None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            gen = self._generation()
            index, changed = self._load_index(gen)
            sess = FileSession(self.path, index)
            try:
                yield sess
            finally:
                if sess.dirty or changed:
                    gen += 1
                    self._save_index(index, gen)
                with _cache_lock:
                    _cache[self.path] = (gen, index)
        except OSError as e:
            if e.errno in (errno.EROFS, errno.ENOSPC, errno.EACCES):
                raise StoreUnavailable(f"host-local data dir {self.path}: {e.strerror}") from None
            raise
        finally:
            os.close(lock_fd)
