"""``polyrec eval --cold-start``: new MovieLens items started from their text in seven languages.

Every contender is polyrec's model as the worker runs it (factors blended with the co-occurrence
memory, the worker's defaults); ``random-init`` without any cold-start feature (random start, no
young-item scoring), ``young`` with the young-item scoring (``polyrec/consumers.py``), and
``projection-<lang>`` with the text start, the young-item scoring, the exploration of items with no
events yet and the promotion of young items (``polyrec/explore.py``): the worker's model.
``projection-en-no-explore`` leaves the exploration and the promotion out,
``projection-en-explore-only`` the promotion, ``projection-en-promote-only`` the exploration: what each
buys new items and costs everyone.

Encodes every item's English text, the new items' text in every other language and two English
references, the catalogue's genre lists in every language and the bilingual title pairs, once
each (nothing is cached); tunes the projection on a validation split that never contains the
test's new items, replays the MovieLens data set once with every contender, then measures cross-lingual
consistency and alignment.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from encoders.text import item_text
from polyrec.consumers import ConsumersConfig
from polyrec.cooccurrence import CooccurrenceConfig
from polyrec.datasets.movielens import DATASETS, MAPPING, Movie, Source, load_movies, movielens_replay
from polyrec.datasets.movielens_i18n import (
    LANGUAGES,
    ML100K_TITLES,
    TITLES,
    TitleTable,
    bilingual_pairs,
    genre_names,
    render,
)
from polyrec.evaluation.baselines import Popularity
from polyrec.evaluation.coldstart import (
    ANNOUNCE,
    WARMUP_SHARE,
    ColdStartMF,
    ItemTexts,
    KnownStartMF,
    ProjectionSettings,
    cold_start_summaries,
    final_vectors,
    first_events,
    holdout_items,
    overlap_at_k,
    top1_hits,
    validation_split,
    warmup_events,
)
from polyrec.evaluation.confidence import paired_difference
from polyrec.evaluation.protocol import Replay, run_prequential
from polyrec.evaluation.tuning import grid
from polyrec.explore import ExploreConfig, audience_thresholds, margins, user_bars
from polyrec.ids import IdIndex
from polyrec.mf import MFConfig
from polyrec_cli.evaluation import coldstart_report, report

GRID = grid(alpha=(0.3, 3.0, 30.0), min_count=(3, 10), refit_every=(250, 2000))
# Real translations in a language the encoder was trained on, Latin script (the romanised ones are not).
TRANSLATED = ("de", "es", "fr", "it", "pl", "pt", "sv")
ENCODE_CHUNK = 256
SCORED_EVENTS = ("click", "purchase")  # run_prequential's default
CONTROL = "projection-en-shuffled"
YOUNG = "young"  # random start, young items scored from their consumers
MEMORY, YOUNG_ITEMS, EXPLORE = CooccurrenceConfig(), ConsumersConfig(), ExploreConfig()  # the worker's defaults
NO_EXPLORE = "projection-en-no-explore"
# the worker's model with one of its two ways of giving new items a place left out
PARTS = {"projection-en-explore-only": replace(EXPLORE, reach=0),
         "projection-en-promote-only": replace(EXPLORE, fit=0.0)}
# Rank only the new items, by their events so far, or by their events among the last RECENT_WINDOW
# (chosen on the validation split among 1,000, 5,000 and 20,000): they know which items are new (and so scored).
NEW_POPULARITY, NEW_POPULARITY_RECENT, RECENT_WINDOW = "new-item-popularity", "new-item-popularity-recent", 1000
# Leaky references, not contenders: new items start from what random-init learned for them by the end.
CEILINGS = {"ceiling-final-vector": "both", "ceiling-final-factors": "factors", "ceiling-final-bias": "bias"}


def variant_texts(movies: dict[str, Movie], ids: list[str], language: str, separator: str = ", ",
                  table: TitleTable = ML100K_TITLES) -> list[str]:
    """Each item's ``language`` variant as the stream would encode it from an ``items`` record:
    the title with its year, as MovieLens writes it, then the genres as the description, joined by
    ``separator`` (the demo's ", " unless a reference asks for another)."""
    texts = []
    for i in ids:
        title, genres = render(i, movies[i].title, movies[i].genres, language, table)
        variant = replace(movies[i], title=title, genres=genres)
        texts.append(item_text(variant.display_title, separator.join(variant.genres)))
    return texts


def encode(encoder, texts: list[str], advance: Callable[[int], None]) -> np.ndarray:
    """``encode_passages`` in chunks, reporting progress."""
    out = []
    for start in range(0, len(texts), ENCODE_CHUNK):
        chunk = texts[start:start + ENCODE_CHUNK]
        out.append(encoder.encode_passages(chunk))
        advance(len(chunk))
    return np.concatenate(out)


def _replay_new(replay: Replay, models: list, new: np.ndarray, n_first: int, batch_size: int,
                progress: Callable[[int], None]) -> list:
    return run_prequential(replay, models, batch_size=batch_size, announce=ANNOUNCE, scored_events=SCORED_EVENTS,
                           score_mask=first_events(replay.items, new, n_first), progress=progress)


def tune(replay: Replay, test_new: np.ndarray, texts: ItemTexts, config: MFConfig, *, frac: float,
         seed: int, n_first: int, batch_size: int, progress: Callable[[int], None]) -> dict:
    """Grid search on a validation split: the stream without the test's new items, with another
    seeded ``frac`` of its items held out as new. Best projection recall@10 wins."""
    val, val_new = validation_split(replay, test_new, frac, seed)
    models = [ColdStartMF(config, val_new, texts, ProjectionSettings(**p), name=f"projection#{n}",
                          cooccurrence=MEMORY, consumers=YOUNG_ITEMS) for n, p in enumerate(GRID)]
    results = _replay_new(val, models, val_new, n_first, batch_size, progress)
    summaries = cold_start_summaries(results, val, val_new, n_first, SCORED_EVENTS)
    table = [{"params": p, "recall@10": summaries[r.name]["recall@10"]} for p, r in zip(GRID, results)]
    best = max(table, key=lambda row: row["recall@10"])
    return {"events": len(val), "new_items": len(val_new), "scored_events": summaries[results[0].name]["scored_events"],
            "candidates": table, "chosen": best["params"]}


def alignment(encoder, movies: dict[str, Movie], table: TitleTable, advance: Callable[[int], None]) -> dict:
    """Top-1 retrieval between the two titles of every real bilingual pair, both directions."""
    pairs = bilingual_pairs({i: m.title for i, m in movies.items()}, table)
    english = encode(encoder, [p[2] for p in pairs], advance)
    foreign = encode(encoder, [p[3] for p in pairs], advance)
    lang = np.array([p[1] for p in pairs])
    to_other, to_en = top1_hits(english, foreign), top1_hits(foreign, english)
    translated = np.isin(lang, TRANSLATED)
    return {"pairs": len(pairs), "candidates": "all pairs' titles on the other side",
            "top1_en_to_other": float(to_other.mean()), "top1_other_to_en": float(to_en.mean()),
            "translated_subset": {"languages": list(TRANSLATED), "pairs": int(translated.sum()),
                                  "top1_en_to_other": float(to_other[translated].mean()),
                                  "top1_other_to_en": float(to_en[translated].mean())},
            "per_language": {str(code): {"pairs": int((lang == code).sum()),
                                         "top1_en_to_other": float(to_other[lang == code].mean()),
                                         "top1_other_to_en": float(to_en[lang == code].mean())}
                             for code in np.unique(lang)},
            "misses_en_to_other": [list(p) for p, hit in zip(pairs, to_other) if not hit]}


@dataclass
class _Embeddings:
    """Every text embedding a run needs, each encoded once."""

    catalog: np.ndarray  # every item's English text, in ``ids`` order
    new: dict[str, np.ndarray]  # language -> the new items' texts
    again: np.ndarray  # the new items' English texts, encoded in other batches
    slashed: np.ndarray  # the same with the genres joined by " / "
    genre_texts: dict[str, list[str]]  # language -> the catalogue's distinct genre lists
    genres: dict[str, np.ndarray]  # language -> their embeddings
    alignment: dict  # top-1 retrieval between the real bilingual title pairs


def _encode_all(encoder, movies: dict[str, Movie], table: TitleTable, ids: list[str], new: np.ndarray,
                languages: tuple[str, ...], bar) -> _Embeddings:
    """Encode everything, with a progress bar per kind of text."""
    t = bar.add_task("encoding item texts (en, every item)", total=len(ids))
    catalog = encode(encoder, variant_texts(movies, ids, "en", table=table), lambda n: bar.advance(t, n))
    emb = {"en": catalog[IdIndex(ids).rows(new)]}
    for lang in languages[1:]:
        t = bar.add_task(f"encoding new items' texts ({lang})", total=len(new))
        emb[lang] = encode(encoder, variant_texts(movies, list(new), lang, table=table),
                           lambda n, t=t: bar.advance(t, n))
    t = bar.add_task("encoding new items' English references", total=2 * len(new))
    again = encode(encoder, variant_texts(movies, list(new), "en", table=table), lambda n: bar.advance(t, n))
    slashed = encode(encoder, variant_texts(movies, list(new), "en", " / ", table), lambda n: bar.advance(t, n))
    genre_lists = sorted({m.genres for m in movies.values()})
    genre_texts = {lang: [", ".join(genre_names(g, lang)) for g in genre_lists] for lang in languages}
    t = bar.add_task("encoding genre lists", total=len(languages) * len(genre_lists))
    genres = {lang: encode(encoder, texts, lambda n, t=t: bar.advance(t, n)) for lang, texts in genre_texts.items()}
    t = bar.add_task("encoding bilingual title pairs", total=None)
    aligned = alignment(encoder, movies, table, lambda n: bar.advance(t, n))
    bar.stop_task(t)  # open-ended tasks: freeze their clocks
    return _Embeddings(catalog, emb, again, slashed, genre_texts, genres, aligned)


def _contenders(config: MFConfig, ids: list[str], new: np.ndarray, emb: _Embeddings, settings: ProjectionSettings,
                languages: tuple[str, ...], seed: int) -> tuple[list, list[ColdStartMF], ColdStartMF]:
    """Every contender (popularity, new-item popularity, random-init, young, a projection per language,
    the shuffled-text control); the projections; random-init."""
    new_rows = IdIndex(ids).rows(new)

    def arriving(new_emb: np.ndarray) -> ItemTexts:
        """New items arrive with ``new_emb`` and, once they have the events, train the projection with it."""
        fit_on = emb.catalog.copy()
        fit_on[new_rows] = new_emb
        return ItemTexts(ids, fit_on, new, new_emb)

    random_init = ColdStartMF(config, new, name="random-init", cooccurrence=MEMORY)
    young = ColdStartMF(config, new, name=YOUNG, cooccurrence=MEMORY, consumers=YOUNG_ITEMS)
    projections = [ColdStartMF(config, new, arriving(emb.new[lang]), settings, name=f"projection-{lang}",
                               cooccurrence=MEMORY, consumers=YOUNG_ITEMS, explore=EXPLORE) for lang in languages]
    no_explore = ColdStartMF(config, new, arriving(emb.new["en"]), settings, name=NO_EXPLORE, cooccurrence=MEMORY,
                             consumers=YOUNG_ITEMS)
    parts = [ColdStartMF(config, new, arriving(emb.new["en"]), settings, name=name, cooccurrence=MEMORY,
                         consumers=YOUNG_ITEMS, explore=explore) for name, explore in PARTS.items()]
    # control: each new item gets another new item's English text, so only the text-item link is lost
    shuffled = emb.new["en"][np.random.default_rng(seed).permutation(len(new))]
    control = ColdStartMF(config, new, arriving(shuffled), settings, name=CONTROL, cooccurrence=MEMORY,
                          consumers=YOUNG_ITEMS, explore=EXPLORE)
    return [Popularity(), Popularity(name=NEW_POPULARITY, only=new),
            Popularity(RECENT_WINDOW, name=NEW_POPULARITY_RECENT, only=new), random_init, young, no_explore, *parts,
            *projections, control], projections, random_init


def _consistency(base: ColdStartMF, emb: _Embeddings, languages: tuple[str, ...]) -> tuple[dict, dict, dict]:
    """Cross-lingual overlap@10 of the new items' rankings (each language vs English, with ``base``'s
    users and projection), its English references, and the genre lists' alignment."""
    users, project = base.model.user_factors, base.projection.project
    overlap = {lang: float(overlap_at_k(users, project(emb.new[lang]), project(emb.new["en"])).mean())
               for lang in languages if lang != "en"}
    references = {  # English vs English
        "same texts, encoded in other batches": float(overlap_at_k(users, project(emb.again),
                                                                   project(emb.new["en"])).mean()),
        "genres joined by ' / ' (vs the same texts, same batching)":
            float(overlap_at_k(users, project(emb.slashed), project(emb.again)).mean())}
    genre_alignment = {}
    for lang in languages[1:]:  # only the lists whose translation is not the English string (loan words)
        changed = np.array(emb.genre_texts[lang]) != np.array(emb.genre_texts["en"])
        top1 = top1_hits(emb.genres[lang], emb.genres["en"])[changed]
        genre_alignment[lang] = {"genre_lists_top1": float(top1.mean()), "genre_lists_translated": int(changed.sum())}
    return overlap, references, genre_alignment


def _exposure(base: ColdStartMF, emb: _Embeddings, new: np.ndarray,
              languages: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Per language of the new items' text, with ``base``'s final model (users, items, seen items,
    projection), each new item's text projected as if it had no event yet, its audience judged as the
    worker judges a fresh item's (``polyrec/explore.py``, every user with a fit bar): the mean over new
    items of the share of users in it (the users whose top-10 it would enter before its first event),
    and of the share of the item's own consumers in the stream in it (who it reaches, not only how
    many); each relative to English; and the same for the English texts encoded in other batches (a
    reference: int8 activations are quantised per batch)."""
    mf, consumers, history, projection = base.model, base.consumers, base.history, base.projection
    assert consumers is not None and history is not None and projection is not None
    users = mf.user_factors
    factor = users @ mf.item_factors.T
    rows, young = consumers.young_factors(mf.item_factors)
    factor[:, rows] = users @ young.T
    factor += mf.item_bias
    seen = history.pairs(np.arange(len(users)))
    factor[seen] = -np.inf
    bars = user_bars(factor, EXPLORE.fit)
    length, bias = consumers.typical_length(mf.item_factors), consumers.typical_bias(mf.item_bias)
    consumed = np.zeros((len(users), len(new)), bool)  # user x new item: took it in the stream
    column = dict(zip(mf.items.rows(new).tolist(), range(len(new))))
    for u, i in zip(*seen):
        if i in column:
            consumed[u, column[i]] = True

    def reach(texts: np.ndarray) -> tuple[float, float]:  # judged as Consumers.fresh_factors judges a fresh item
        f = projection.project(texts)[:, :-1]
        f *= (length / np.linalg.norm(f, axis=1))[:, None]
        judged = margins(users, bars, f, bias)
        audience = judged >= audience_thresholds(judged, EXPLORE.fit)  # as explore.pick admits
        hits = (audience & consumed).sum(axis=0) / np.maximum(consumed.sum(axis=0), 1)
        return float(audience.mean()), float(hits[consumed.any(axis=0)].mean())

    shares = {lang: reach(emb.new[lang]) for lang in languages} | {"en-again": reach(emb.again)}
    en_reach, en_hits = (max(x, 1e-12) for x in shares["en"])
    return {lang: {"users_reached_per_item": r, "parity_vs_en": r / en_reach,
                   "consumers_reached_per_item": h, "consumers_parity_vs_en": h / en_hits}
            for lang, (r, h) in shares.items()}


def _protocol(batch_size: int, n_new: int, frac: float, seed: int, n_first: int, n_users: int,
              n_genre_lists: int, sample_every: int) -> dict:
    """The protocol, in words, for the JSON."""
    return {"model": "polyrec as the worker runs it: factors blended with the co-occurrence memory (worker defaults); "
                     f"{YOUNG} and projection-<lang> also score young items from their consumers "
                     "(polyrec/consumers.py), random-init and the ceilings do not; projection-<lang> and the control "
                     f"also explore new items with no event yet and promote young new items (polyrec/explore.py, "
                     f"{asdict(EXPLORE)}), {NO_EXPLORE} does neither, "
                     + ", ".join(f"{name} only one ({asdict(explore)})" for name, explore in PARTS.items()),
            "k": 10, "batch_size": batch_size, "new_items": n_new, "new_item_share": frac,
            "seed": seed, "first_events": n_first,
            "scored": "click and purchase events of a new item among its first "
                      f"{n_first} events, scored before the batch is learned; the headline numbers count those "
                      f"after the warm-up (the first {WARMUP_SHARE:.0%} of the stream, as the overall replay "
                      "skips), whole_stream all of them",
            "recent_window": RECENT_WINDOW,  # new-item-popularity-recent: events among the last this many
            "announce": f"new items join the catalog in drops: those whose first event falls in the same "
                        f"{ANNOUNCE}-event window together, in a seeded random order, about {ANNOUNCE} to "
                        f"{2 * ANNOUNCE} events ahead (run_prequential)",
            "projection_fitted_on": "items with >= min_count events: the English text of old items, the "
                                    "text a new item arrived with (the run's language)",
            "control": f"{CONTROL}: the new items' English texts permuted among the new items",
            "ceilings": "leaky references for what a start can buy: each new item starts from the vector "
                        "random-init learned for it by the end of the stream (factors and bias; "
                        "factors only, bias 0; bias only, random factors), then learns as usual",
            "overall": f"the cost of the cold-start features to everyone: {', '.join(OVERALL)} replayed again with "
                       f"the same announcement, 1 in {sample_every} clicks or purchases after the warm-up scored "
                       "(any item's); compared with random-init, the model without cold-start features, with a 95% "
                       "interval of the ratio from a paired bootstrap over users",
            "exposure": "per language: with projection-en's final model (users, items, seen items, projection), "
                        "each new item's text in that language projected as if it had no event yet; the share of "
                        f"the {n_users} users in its audience (polyrec/explore.py: its top-10 place before any "
                        "event), and of its own consumers in the stream in it, means over new items, relative "
                        "to English",
            "overlap_users": f"all {n_users} users, ranking only the {n_new} new items, "
                             "with projection-en's final user factors and projection",
            "overlap_references": "the same overlap between English texts of the new items: the same "
                                  "texts encoded again, in batches of the new items only (int8 activations "
                                  "are quantised per batch; fp32 gives 1.0), and those texts with the "
                                  "genres joined by ' / ' instead of ', ', encoded the same way",
            "genre_lists_top1": f"of the catalogue's {n_genre_lists} distinct genre lists, those whose "
                                "translation differs from the English string (genre_lists_translated): the "
                                "share whose translation, encoded without a title (each language's lists in "
                                "one call), is nearest (cosine) to its own English list among all "
                                f"{n_genre_lists}: the part of an item's text that the language changes"}


def _acceptance(per_language: dict, summaries: dict, aligned: dict, overall: dict) -> dict:
    """The issue's points this run measures (overlap@10 is information only: it is ill-posed among
    near-tied new items, see its English references)."""
    sub = aligned["translated_subset"]
    others = [lang for lang in per_language if lang != "en"]
    return {
        "overall recall@10, projection-en / random-init": report.check(
            overall["projection-en"]["recall@10_vs_random-init"], 0.99),
        **{f"cold-start recall parity {lang} / en": report.check(per_language[lang]["recall_parity_vs_en"], 0.95)
           for lang in others},
        **{f"exposure parity {lang} / en": report.check(per_language[lang]["exposure"]["parity_vs_en"], 0.95)
           for lang in others},
        **{f"projection-{lang} / random-init recall@10": report.check(v["ratio_to_random"], 2.0)
           for lang, v in per_language.items()},
        # differences, not ratios: after the warm-up new-item popularity may score nothing at all
        **{f"projection-{lang} - {reference} recall@10": report.check(
            v["projection"]["recall@10"] - summaries[reference]["recall@10"], 0.0)
           for reference in (NEW_POPULARITY, NEW_POPULARITY_RECENT) for lang, v in per_language.items()},
        "alignment top-1 en -> other, translated pairs": report.check(sub["top1_en_to_other"], 0.85),
        "alignment top-1 other -> en, translated pairs": report.check(sub["top1_other_to_en"], 0.85),
    }


def output_paths(out_dir: Path, dataset: str) -> tuple[Path, Path]:
    """Where a run on ``dataset`` writes its JSON and plot."""
    stem = "coldstart" if dataset == "ml-100k" else f"coldstart-{dataset}"
    return out_dir / f"{stem}.json", out_dir / f"{stem}.png"


def run(out_dir: Path, *, dataset: str = "ml-100k", limit: int | None = None, languages: tuple[str, ...] = LANGUAGES,
        frac: float = 0.2, n_first: int = 20, batch_size: int = 10, seed: int = 0, dim: int = 32,
        sample_every: int = 1) -> dict:
    """Run the whole cold-start evaluation; write ``coldstart.json`` and ``coldstart.png`` (another
    data set: ``coldstart-<dataset>.*``). ``sample_every``: the overall-cost replay scores every
    ``sample_every``-th click or purchase after its warm-up.

    ``languages`` must start with "en", the catalogue's language.
    """
    started = time.perf_counter()
    source = DATASETS[dataset]
    replay = movielens_replay(limit, source=source)
    movies = load_movies(source)
    replayed = {str(i) for i in replay.items}
    ids = [i for i in movies if i in replayed]  # file order (ML-100K: by id)
    new = holdout_items(replay.items, frac, seed)
    config = MFConfig(dim=dim)
    run_ = _replay_all(replay, source, movies, ids, new, config, languages, frac=frac, n_first=n_first,
                       batch_size=batch_size, seed=seed, sample_every=sample_every)
    result = _result(run_, replay, source, ids, new, config, languages, frac=frac, n_first=n_first,
                     batch_size=batch_size, seed=seed, limit=limit, sample_every=sample_every)
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    json_path, png_path = output_paths(out_dir, dataset)
    report.write_json(result, json_path)
    coldstart_report.plot(result, png_path)
    return result


@dataclass
class _Run:
    """What the replays of :func:`run` produced."""

    encoder: dict  # which encoder, graph and provider encoded the texts
    emb: _Embeddings
    tuned: dict
    settings: ProjectionSettings
    projections: list
    results: list
    overall: list  # the overall-cost replay: every item's events, not only new items' first


OVERALL = ("random-init", YOUNG, NO_EXPLORE, *PARTS, "projection-en")


def _replay_all(replay: Replay, source: Source, movies: dict[str, Movie], ids: list[str], new: np.ndarray,
                config: MFConfig, languages: tuple[str, ...], *, frac: float, n_first: int, batch_size: int,
                seed: int, sample_every: int) -> _Run:
    """Encode every text, tune the projection, replay the contenders and the leaky ceilings, with
    progress bars."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from encoders.artifacts import open_encoder
    from stream.settings import Settings

    columns = TextColumn("{task.description:<40}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    env = Settings.from_env()  # the worker's encoder: POLYREC_ENCODER, POLYREC_ENCODER_PROVIDER
    encoder = open_encoder(env.encoder_path, provider=env.encoder_provider, threads=env.encoder_threads,
                           needed_by="polyrec eval --cold-start")
    with encoder, Progress(*columns) as bar:
        used = {**encoder.describe(),
                "text": "'title (year). genres' of the language variant, as the stream encodes an items record"}
        emb = _encode_all(encoder, movies, TITLES[source.key], ids, new, languages, bar)
        t = bar.add_task("tuning the projection (validation split)", total=None)
        tuned = tune(replay, new, ItemTexts(ids, emb.catalog, ids, emb.catalog), config, frac=frac, seed=seed,
                     n_first=n_first, batch_size=batch_size, progress=lambda n: bar.advance(t, n))
        bar.stop_task(t)
        settings = ProjectionSettings(**tuned["chosen"])
        models, projections, random_init = _contenders(config, ids, new, emb, settings, languages, seed)
        t = bar.add_task("cold-start replay", total=len(replay))
        results = _replay_new(replay, models, new, n_first, batch_size, lambda n: bar.advance(t, n))
        # new items start from what random-init learned for them by the end of the stream
        ceilings = [KnownStartMF(config, final_vectors(random_init.model, list(new), part), name=name,
                                 cooccurrence=MEMORY) for name, part in CEILINGS.items()]
        t = bar.add_task("ceiling replay (leaky starts)", total=len(replay))
        results += _replay_new(replay, ceilings, new, n_first, batch_size, lambda n: bar.advance(t, n))
        # what the cold-start features cost everyone: the same announcement, every event scorable
        again = _contenders(config, ids, new, emb, settings, languages, seed)[0]  # untrained copies
        fresh_models = [m for m in again if m.name in OVERALL]
        t = bar.add_task("overall-cost replay", total=len(replay))
        overall = run_prequential(replay, fresh_models, batch_size=batch_size, announce=ANNOUNCE,
                                  warmup=warmup_events(len(replay)), sample_every=sample_every,
                                  progress=lambda n: bar.advance(t, n))
    return _Run(used, emb, tuned, settings, projections, results, overall)


def _result(run_: _Run, replay: Replay, source: Source, ids: list[str], new: np.ndarray, config: MFConfig,
            languages: tuple[str, ...], *, frac: float, n_first: int, batch_size: int, seed: int,
            limit: int | None, sample_every: int) -> dict:
    """The run's JSON: protocol, encoder, tuning, every contender, per language, alignment, acceptance."""
    emb, settings = run_.emb, run_.settings
    summaries = cold_start_summaries(run_.results, replay, new, n_first, SCORED_EVENTS)
    base = run_.projections[0]  # projection-en: its users and its last projection rank the new items
    if base.projection is None:
        raise ValueError(f"too few events for the cold-start eval (--limit {limit}): no projection was fitted, "
                         f"fewer than two items reached {settings.min_count} events; use --limit 5000 or more")
    overlap, overlap_references, genre_alignment = _consistency(base, emb, languages)
    exposure = _exposure(base, emb, new, languages)
    random_recall = summaries["random-init"]["recall@10"]
    en_recall = max(summaries["projection-en"]["recall@10"], 1e-12)
    per_language = {lang: {"projection": summaries[f"projection-{lang}"],
                           "ratio_to_random": summaries[f"projection-{lang}"]["recall@10"] / max(random_recall, 1e-12),
                           "recall_parity_vs_en": summaries[f"projection-{lang}"]["recall@10"] / en_recall,
                           "exposure": exposure[lang],
                           "overlap@10_vs_en": overlap.get(lang, 1.0),
                           **genre_alignment.get(lang, {})} for lang in languages}
    overall = {r.name: r.summary() for r in run_.overall}
    base_result = next(r for r in run_.overall if r.name == "random-init")
    base_hits, users = np.concatenate(base_result.hits), np.concatenate(base_result.users)
    without = max(overall["random-init"]["recall@10"], 1e-12)
    for r in run_.overall:  # a paired bootstrap over users: how far sampling alone moves the ratio
        diff = paired_difference(np.concatenate(r.hits), base_hits, users)
        overall[r.name]["recall@10_vs_random-init"] = overall[r.name]["recall@10"] / without
        overall[r.name]["recall@10_vs_random-init_95ci"] = [1 + diff["low"] / without, 1 + diff["high"] / without]
    return {
        "dataset": {"name": source.name, "key": source.key, "events": len(replay), "items": len(ids),
                    "mapping": MAPPING, "order": "timestamp, file order as tie-break"},
        "protocol": _protocol(batch_size, len(new), frac, seed, n_first, len(base.model.user_factors),
                              len(emb.genre_texts["en"]), sample_every),
        "encoder": run_.encoder,
        "mf_config": asdict(config),
        "cooccurrence": asdict(MEMORY),
        "young": asdict(YOUNG_ITEMS),
        "projection": asdict(settings),
        "tuning": run_.tuned,
        "contenders": summaries,
        "per_language": per_language,
        "overlap_references": overlap_references,
        "exposure_reference": exposure["en-again"],
        "overall": overall,
        "alignment": emb.alignment,
        "acceptance": _acceptance(per_language, summaries, emb.alignment, overall),
    }
