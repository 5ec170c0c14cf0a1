"""Maps and lists that a catalog upsert changes without copying them: each version is a small overlay on a shared
base that no version ever modifies.

Why: an upsert builds a new version of every per-item structure (id -> row maps, card and text columns, the search
delta's token maps) while requests still read the old version, so nothing shared may change under them. Copying a
100,000-entry dict or list per upsert costs milliseconds each, and a PUT /items touches a dozen of them; these
classes copy only the overlay (what the upserts since the last merge changed), and fold it into a new base once it
grows past a fraction of the base, so the copying per upsert stays small and bounded (amortised: a merge of n
entries once every n / 8 changes).

`Layered` is a read-only Mapping (`with_items` returns the next version); `Column` is a read-only Sequence whose
next version (`with_values`) may replace rows and append new ones. Both answer lookups in O(1) (one extra dict
probe) and iterate in the order a dict or list would.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar, overload

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")

_APPEND = threading.Lock()  # appends to a shared Column base: one check-and-extend at a time
_GONE: Any = object()  # an overlay entry removing a base key
_MISSING: Any = object()
_MERGE_FRACTION = 8  # the overlay is folded into the base once it holds more than base / this entries
_MERGE_MIN = 512


def _merge_due(top: int, base: int) -> bool:
    return top > max(_MERGE_MIN, base // _MERGE_FRACTION)


class Layered(Mapping[K, V], Generic[K, V]):
    """A dict as a shared base plus this version's overlay (new, replaced and removed keys)."""

    __slots__ = ("_base", "_len", "_top")

    def __init__(self, base: Mapping[K, V] | None = None) -> None:
        self._base: dict[K, V] = dict(base) if base is not None else {}
        self._top: dict[K, V] = {}
        self._len = len(self._base)

    @classmethod
    def sharing(cls, base: dict[K, V]) -> Layered[K, V]:
        """A version over `base` itself, not a copy: for a dict nobody changes afterwards (one just built)."""
        return cls._of(base, {}, len(base))

    @classmethod
    def _of(cls, base: dict[K, V], top: dict[K, V], length: int) -> Layered[K, V]:
        out = cls.__new__(cls)
        out._base, out._top, out._len = base, top, length
        return out

    def with_items(self, items: Iterable[tuple[K, V]] | Mapping[K, V] = (), remove: Iterable[K] = ()
                   ) -> Layered[K, V]:
        """The next version: `items` set, the keys in `remove` gone (absent ones ignored). This one is unchanged."""
        changes: dict[K, V] = dict(items.items() if isinstance(items, Mapping) else items)
        for k in remove:
            changes[k] = _GONE
        length, base, top = self._len, self._base, self._top
        for k, v in changes.items():  # how the length moves: inlined (a delta's token maps change ~100 keys a call)
            was = top.get(k, _MISSING)
            length += (v is not _GONE) - ((k in base) if was is _MISSING else (was is not _GONE))
        top = {**top, **changes}
        if _merge_due(len(top), len(base)):
            base = {**base, **top}
            for k in [k for k, v in top.items() if v is _GONE]:
                base.pop(k, None)
            return Layered._of(base, {}, length)
        return Layered._of(self._base, top, length)

    def __getitem__(self, key: K) -> V:
        v = self._top.get(key, self)
        if v is self:
            return self._base[key]
        if v is _GONE:
            raise KeyError(key)
        return v  # type: ignore[return-value]

    def get(self, key: K, default: Any = None) -> Any:
        v = self._top.get(key, self)
        if v is self:
            return self._base.get(key, default)
        return default if v is _GONE else v

    def __contains__(self, key: object) -> bool:
        v = self._top.get(key, self)  # type: ignore[call-overload]
        return key in self._base if v is self else v is not _GONE

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[K]:
        top = self._top
        for k in self._base:
            if top.get(k, self) is not _GONE:
                yield k
        for k, v in top.items():
            if v is not _GONE and k not in self._base:
                yield k

    def __bool__(self) -> bool:
        return self._len > 0


class Column(Sequence[T], Generic[T]):
    """A list as the first `n` entries of a shared, append-only base plus this version's replaced rows.

    Only the newest version appends to the base in place (older ones never read past their own `n`); a version
    that is not the newest copies what it keeps before appending, so no reader ever sees a row change."""

    __slots__ = ("_base", "_n", "_over")

    def __init__(self, values: Iterable[T] = ()) -> None:
        self._base: list[T] = list(values)
        self._n = len(self._base)
        self._over: dict[int, T] = {}

    @classmethod
    def _of(cls, base: list[T], n: int, over: dict[int, T]) -> Column[T]:
        out = cls.__new__(cls)
        out._base, out._n, out._over = base, n, over
        return out

    def with_values(self, rows: Sequence[int], values: Sequence[T], fill: T) -> Column[T]:
        """The next version: row `rows[i]` holds `values[i]`; rows at or past the end are appended (the gap, if
        any, holds `fill`). This one is unchanged."""
        n_old = self._n
        n = max(n_old, max(rows, default=-1) + 1)
        with _APPEND:
            if n > n_old and len(self._base) == n_old:  # the newest version: append in place, past every older n
                base, over, own = self._base, dict(self._over), n_old
                base.extend([fill] * (n - n_old))
            elif n > n_old:  # another version appended already: copy what this one sees
                base, over, own = [*self, *[fill] * (n - n_old)], {}, 0
            else:
                base, over, own = self._base, dict(self._over), n
        for row, value in zip(rows, values, strict=True):
            if row >= own:
                base[row] = value  # a row no other version reads
            else:
                over[row] = value
        if _merge_due(len(over), n):
            return Column(Column._of(base, n, over))
        return Column._of(base, n, over)

    @overload
    def __getitem__(self, i: int) -> T: ...

    @overload
    def __getitem__(self, i: slice) -> list[T]: ...

    def __getitem__(self, i: int | slice) -> T | list[T]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(i)
        v = self._over.get(i, self)
        return self._base[i] if v is self else v  # type: ignore[return-value]

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[T]:
        if not self._over:  # islice: a newer version may append to the base while this iterates
            yield from itertools.islice(self._base, self._n)
            return
        over = self._over
        for i in range(self._n):
            v = over.get(i, self)
            yield self._base[i] if v is self else v  # type: ignore[misc]

    def tolist(self) -> list[T]:
        return list(self)

    def __eq__(self, other: object) -> bool:
        """Equal to a list or Column of the same entries, as a list would be."""
        if not isinstance(other, Column | list):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # mutable-looking, like a list


__all__ = ["Column", "Layered"]
