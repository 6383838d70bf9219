"""An LRU cache for generated outputs and embeddings, optionally persisted on disk.

Keys are SHA-256 digests of the normalised input, the model's version and the
generation settings, so a changed model or setting never returns a stale answer. The
disk layer is one SQLite file (WAL), safe for several processes; the memory layer is an
``OrderedDict`` in front of it.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """NFC, whitespace runs collapsed to one space, stripped: equal texts share an entry."""
    return _SPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def cache_key(*parts: Any) -> str:
    """SHA-256 over the JSON of ``parts`` (strings are normalised first)."""
    norm = [normalise(p) if isinstance(p, str) else p for p in parts]
    blob = json.dumps(norm, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    disk_hits: int = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class LRUCache:
    """Thread-safe LRU of JSON-serialisable values, with an optional SQLite file behind it.

    Args:
        max_items: entries kept in memory; the least recently used go first.
        path: a SQLite file to persist entries across runs (None: memory only).
    """

    def __init__(self, max_items: int = 4096, path: str | Path | None = None) -> None:
        self.max_items = max_items
        self.stats = CacheStats()
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, value TEXT)")
            self._db.commit()

    def get(self, key: str) -> Any | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.stats.hits += 1
                return self._items[key]
            if self._db is not None:
                row = self._db.execute("SELECT value FROM cache WHERE key = ?", (key,)).fetchone()
                if row is not None:
                    value = json.loads(row[0])
                    self._put_memory(key, value)
                    self.stats.hits += 1
                    self.stats.disk_hits += 1
                    return value
            self.stats.misses += 1
            return None

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._put_memory(key, value)
            if self._db is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO cache (key, value) VALUES (?, ?)",
                    (key, json.dumps(value, ensure_ascii=False)),
                )
                self._db.commit()

    def _put_memory(self, key: str, value: Any) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            if self._db is not None:
                self._db.execute("DELETE FROM cache")
                self._db.commit()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
