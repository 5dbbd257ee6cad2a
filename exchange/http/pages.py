"""The cache of full feed pages (protocol.md §4): in memory (LRU) and on disk.

A full page never changes, except when an erasure redacts one of its entries (§3). Every
such erasure raises the store's erasure generation (see ``Store.redactions_since``); the
cache remembers the generation its pages agree with and drops the pages an erasure touched
as soon as it sees a newer one, whether the erasure ran in this process or in another one
on the same home (``exchange erase`` while ``exchange serve`` runs).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

__all__ = ["PageCache", "page_numbers", "remove_page_files"]

_log = logging.getLogger(__name__)


def page_numbers(seqs: Iterable[int], page_size: int) -> set[int]:
    """The pages that hold the entries ``seqs``."""
    return {seq // page_size for seq in seqs}


def _page_path(folder: Path, number: int) -> Path:
    return folder / f"{number}.page"


def remove_page_files(folder: Path, numbers: Iterable[int]) -> None:
    """Delete the cached files of pages ``numbers`` (those that exist)."""
    for number in numbers:
        try:
            _page_path(folder, number).unlink(missing_ok=True)
        except OSError as error:
            _log.warning("page cache: cannot remove page %s: %s", number, error)


class PageCache:
    """Full feed pages: keep rendered ones in memory (LRU, up to a byte budget) and on disk
    under the node's home, so that a page is built from the store only once.

    A disk file holds ``<ETag> <length>\\n<body>``; a file that does not match its length
    (a write cut short by a crash) is ignored and rebuilt. The folder is a cache: deleting
    it costs only rebuilding.
    """

    def __init__(self, max_bytes: int, folder: Path | None = None) -> None:
        self.max_bytes = max_bytes
        self.folder = folder
        #: The store's erasure generation the cached pages agree with (None: not yet known).
        self.generation: int | None = None
        self._pages: OrderedDict[int, tuple[bytes, str]] = OrderedDict()
        self._bytes = 0

    def get(self, number: int) -> tuple[bytes, str] | None:
        found = self._pages.get(number)
        if found is not None:
            self._pages.move_to_end(number)
            return found
        found = self._read(number)
        if found is not None:
            self._remember(number, *found)
        return found

    def put(self, number: int, body: bytes, tag: str, *, generation: int | None = None) -> None:
        """Keep page ``number``; ``generation`` is the one it was built under (read before
        its entries): a page built before an erasure the cache already knows of is not kept."""
        if generation is not None and generation != self.generation:
            return
        self._remember(number, body, tag)
        self._write(number, body, tag)

    def sync(
        self, since: int | None, generation: int, redacted: Iterable[int], page_size: int
    ) -> None:
        """Agree with erasure generation ``generation`` of the store: drop the pages that
        hold ``redacted``, the entries redacted after generation ``since`` (what the cache
        knew when it asked). Every page goes when the store went back, as a restored backup
        does. Requests may sync concurrently: the generation never moves back for that."""
        self.forget(page_numbers(redacted, page_size))
        if since is not None and generation < since:
            self.forget(list(self._pages))
            if self.folder is not None:
                for path in self.folder.glob("*.page"):
                    path.unlink(missing_ok=True)
            self.generation = generation
        elif self.generation is None or generation > self.generation:
            self.generation = generation

    def forget(self, numbers: Iterable[int]) -> None:
        """Drop pages ``numbers`` from memory and from disk."""
        wanted = list(numbers)
        for number in wanted:
            found = self._pages.pop(number, None)
            if found is not None:
                self._bytes -= len(found[0])
        if self.folder is not None:
            remove_page_files(self.folder, wanted)

    def _remember(self, number: int, body: bytes, tag: str) -> None:
        if len(body) > self.max_bytes or number in self._pages:
            return
        self._pages[number] = (body, tag)
        self._bytes += len(body)
        while self._bytes > self.max_bytes:
            _, (old, _) = self._pages.popitem(last=False)
            self._bytes -= len(old)

    def _path(self, number: int) -> Path | None:
        return None if self.folder is None else _page_path(self.folder, number)

    def _read(self, number: int) -> tuple[bytes, str] | None:
        path = self._path(number)
        if path is None:
            return None
        try:
            data = path.read_bytes()
        except OSError:
            return None
        head, _, body = data.partition(b"\n")
        tag, _, length = head.decode("ascii", "replace").partition(" ")
        if not length.isdigit() or int(length) != len(body):
            return None
        return body, tag

    def _write(self, number: int, body: bytes, tag: str) -> None:
        path = self._path(number)
        if path is None:
            return
        try:
            path.parent.mkdir(exist_ok=True)
            temporary = path.with_suffix(".tmp")
            temporary.write_bytes(f"{tag} {len(body)}\n".encode() + body)
            temporary.replace(path)
        except OSError as error:
            _log.warning("page cache: cannot write %s: %s", path, error)
