"""The LRU output cache: eviction order, counts, threads, SQLite persistence, keys."""

from __future__ import annotations

import random
import threading
import unicodedata
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from taskloop.models.cache import CacheStats, LRUCache, cache_key, normalise


def test_least_recently_used_goes_first() -> None:
    """max 3: put a b c, read a (a becomes newest), put d → b (the oldest) goes; put e
    → c goes. Left: a d e."""
    cache = LRUCache(max_items=3)
    for key in "abc":
        cache.put(key, key.upper())
    assert cache.get("a") == "A"
    cache.put("d", "D")
    assert cache.get("b") is None
    cache.put("e", "E")
    assert cache.get("c") is None
    assert [cache.get(k) for k in "ade"] == ["A", "D", "E"]
    assert len(cache) == 3


def test_put_of_an_existing_key_replaces_and_refreshes() -> None:
    """max 2: put a b, put a again (now newest, new value), put c → b goes, not a."""
    cache = LRUCache(max_items=2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 3)
    cache.put("c", 4)
    assert len(cache) == 2
    assert cache.get("a") == 3 and cache.get("b") is None and cache.get("c") == 4


def test_stats_count_hits_and_misses() -> None:
    """2 hits and 3 misses: hit rate 2 / 5 = 0.4."""
    cache = LRUCache()
    cache.put("x", {"texts": ["a"]})
    for key in ("x", "y", "x", "z", "w"):
        cache.get(key)
    assert (cache.stats.hits, cache.stats.misses, cache.stats.disk_hits) == (2, 3, 0)
    assert cache.stats.hit_rate == 0.4
    assert CacheStats().hit_rate == 0.0  # no lookups yet: no division by zero


def test_zero_items_keeps_nothing() -> None:
    cache = LRUCache(max_items=0)
    cache.put("a", 1)
    assert len(cache) == 0 and cache.get("a") is None


def test_threads_hammering_one_cache() -> None:
    """8 threads × 3000 random get/put on 200 keys through a 50-item LRU: no exception,
    never more than 50 items, every get counted once, every value the one put for it."""
    cache = LRUCache(max_items=50)
    errors: list[BaseException] = []
    gets = [0] * 8

    def work(n: int) -> None:
        rng = random.Random(n)
        try:
            for _ in range(3000):
                key = f"k{rng.randrange(200)}"
                if rng.random() < 0.5:
                    cache.put(key, {"v": key})
                else:
                    gets[n] += 1
                    value = cache.get(key)
                    assert value is None or value == {"v": key}
                assert len(cache) <= 50
        except BaseException as exc:  # the main thread reports it
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert cache.stats.hits + cache.stats.misses == sum(gets)
    assert len(cache) == 50


def test_threads_with_sqlite_behind(tmp_path: Path) -> None:
    """The same from 4 threads with the SQLite file (one connection, shared under the
    lock): every value written is read back by a fresh instance."""
    path = tmp_path / "cache.sqlite"
    cache = LRUCache(max_items=10, path=path)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(100):
                cache.put(f"{n}-{i}", [n, i])
                cache.get(f"{n}-{i // 2}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cache.close()
    assert not errors
    reopened = LRUCache(path=path)
    assert all(reopened.get(f"{n}-{i}") == [n, i] for n in range(4) for i in range(100))
    reopened.close()


def test_sqlite_persists_across_instances(tmp_path: Path) -> None:
    """Written by one instance, read by the next from disk (a disk hit), then from
    memory (a plain hit); clear() empties the file too."""
    path = tmp_path / "sub" / "cache.sqlite"  # the folder is created
    value = {"texts": ["Grüße, 世界"], "input_tokens": 7, "truncated": False}
    first = LRUCache(path=path)
    first.put("k", value)
    first.close()

    second = LRUCache(path=path)
    assert len(second) == 0  # nothing in memory yet
    assert second.get("k") == value
    assert (second.stats.hits, second.stats.disk_hits) == (1, 1)
    assert second.get("k") == value
    assert (second.stats.hits, second.stats.disk_hits) == (2, 1)
    assert second.get("missing") is None and second.stats.misses == 1
    second.clear()
    second.close()

    third = LRUCache(path=path)
    assert third.get("k") is None
    third.close()


def test_eviction_from_memory_keeps_the_disk_copy(tmp_path: Path) -> None:
    cache = LRUCache(max_items=1, path=tmp_path / "c.sqlite")
    cache.put("a", 1)
    cache.put("b", 2)  # evicts a from memory
    assert cache.get("a") == 1
    assert cache.stats.disk_hits == 1
    cache.close()


def test_normalise() -> None:
    """NFC first ("e" + combining acute → "é"), then whitespace runs → one space, strip."""
    assert normalise("  caf\u0065\u0301 \t au\n\nlait ") == "caf\u00e9 au lait"
    assert normalise("") == ""


def test_cache_key_equal_for_equal_texts() -> None:
    settings = {"max_new_tokens": 8, "num_beams": 1}
    a = cache_key("generate", "v1", settings, "Grüße aus  Wien")
    b = cache_key("generate", "v1", settings, " Gru\u0308ße aus\nWien ")
    assert a == b
    assert len(a) == 64 and int(a, 16) >= 0  # a SHA-256 hex digest
    # dict order does not matter (keys are sorted before hashing)
    assert cache_key({"b": 2, "a": 1}) == cache_key({"a": 1, "b": 2})


def test_cache_key_differs_for_different_parts() -> None:
    base = cache_key("generate", "v1", {"max_new_tokens": 8}, "text")
    assert cache_key("generate", "v1", {"max_new_tokens": 9}, "text") != base
    assert cache_key("generate", "v2", {"max_new_tokens": 8}, "text") != base
    assert cache_key("embed", "v1", {"max_new_tokens": 8}, "text") != base
    assert cache_key("generate", "v1", {"max_new_tokens": 8}, "Text") != base  # case kept
    # parts are not concatenated: moving a boundary changes the key
    assert cache_key("ab", "c") != cache_key("a", "bc")


@given(st.text())
def test_normalise_is_idempotent(text: str) -> None:
    once = normalise(text)
    assert normalise(once) == once
    assert unicodedata.is_normalized("NFC", once)
    assert once == once.strip() and "  " not in once


@given(st.text(), st.text(alphabet=" \t\n\r\u00a0\u2003", max_size=3))
def test_cache_key_ignores_surrounding_whitespace(text: str, pad: str) -> None:
    assert cache_key("p", pad + text + pad) == cache_key("p", text)
