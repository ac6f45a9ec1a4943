"""MovieLens item texts in several languages: a genre dictionary and the real alternate titles.

Pure functions, no I/O. Rules (documented in docs/coldstart.md):

* A title ``Main (Alternate)`` carries a real second title; a parenthesised 4-digit year is not
  one. Trailing articles move to the front: ``Grand bleu, Le`` -> ``Le Grand bleu``,
  ``Uomo delle stelle, L'`` -> ``L'Uomo delle stelle``.
* Which side of a pair is English, and the language of the other side, come from a small
  hand-checked table per data set (:data:`TITLES`; ML-100K's ``FOREIGN_TITLE``, keyed by item id;
  ML-1M's in ``movielens_1m_titles``). Pairs that are two English names of
  one film (``Seven (Se7en)``) are listed in ``ENGLISH_ALIASES`` and are no bilingual pair.
* Romanised titles (pinyin, romaji, ...) are real alternates but not titles a zh/ja catalogue
  would show, so they are tagged with a ``-Latn`` language (``zh-Latn``) and never used as the
  zh/ja title.
* Variant ``X`` of an item: the title in ``X`` when the item has one, else the English title
  (or the only, original, title); the genres translated into ``X`` through ``GENRES``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from polyrec.datasets import movielens_1m_titles

LANGUAGES = ("en", "de", "fr", "es", "it", "ja", "zh")

# The 19 MovieLens genres (as spelled in ml-100k.item) in each language of LANGUAGES[1:].
GENRES: dict[str, dict[str, str]] = {
    "Action": {"de": "Action", "fr": "Action", "es": "Acción", "it": "Azione", "ja": "アクション", "zh": "动作"},
    "Adventure": {"de": "Abenteuer", "fr": "Aventure", "es": "Aventura", "it": "Avventura", "ja": "冒険", "zh": "冒险"},
    "Animation": {"de": "Zeichentrick", "fr": "Animation", "es": "Animación", "it": "Animazione",
                  "ja": "アニメーション", "zh": "动画"},
    "Children's": {"de": "Kinderfilm", "fr": "Jeunesse", "es": "Infantil", "it": "Per ragazzi", "ja": "子供向け",
                   "zh": "儿童"},
    "Comedy": {"de": "Komödie", "fr": "Comédie", "es": "Comedia", "it": "Commedia", "ja": "コメディ", "zh": "喜剧"},
    "Crime": {"de": "Krimi", "fr": "Policier", "es": "Policíaca", "it": "Poliziesco", "ja": "犯罪", "zh": "犯罪"},
    "Documentary": {"de": "Dokumentarfilm", "fr": "Documentaire", "es": "Documental", "it": "Documentario",
                    "ja": "ドキュメンタリー", "zh": "纪录片"},
    "Drama": {"de": "Drama", "fr": "Drame", "es": "Drama", "it": "Drammatico", "ja": "ドラマ", "zh": "剧情"},
    "Fantasy": {"de": "Fantasy", "fr": "Fantastique", "es": "Fantasía", "it": "Fantastico", "ja": "ファンタジー",
                "zh": "奇幻"},
    "Film-Noir": {"de": "Film noir", "fr": "Film noir", "es": "Cine negro", "it": "Noir", "ja": "フィルム・ノワール",
                  "zh": "黑色电影"},
    "Horror": {"de": "Horror", "fr": "Épouvante", "es": "Terror", "it": "Orrore", "ja": "ホラー", "zh": "恐怖"},
    "Musical": {"de": "Musical", "fr": "Comédie musicale", "es": "Musical", "it": "Musical", "ja": "ミュージカル",
                "zh": "歌舞"},
    "Mystery": {"de": "Mystery", "fr": "Mystère", "es": "Misterio", "it": "Mistero", "ja": "ミステリー", "zh": "悬疑"},
    "Romance": {"de": "Liebesfilm", "fr": "Romance", "es": "Romance", "it": "Sentimentale", "ja": "ロマンス",
                "zh": "爱情"},
    "Sci-Fi": {"de": "Science-Fiction", "fr": "Science-fiction", "es": "Ciencia ficción", "it": "Fantascienza",
               "ja": "SF", "zh": "科幻"},
    "Thriller": {"de": "Thriller", "fr": "Thriller", "es": "Suspense", "it": "Thriller", "ja": "スリラー",
                 "zh": "惊悚"},
    "War": {"de": "Kriegsfilm", "fr": "Guerre", "es": "Bélico", "it": "Guerra", "ja": "戦争", "zh": "战争"},
    "Western": {"de": "Western", "fr": "Western", "es": "Wéstern", "it": "Western", "ja": "西部劇", "zh": "西部"},
    "unknown": {"de": "unbekannt", "fr": "inconnu", "es": "desconocido", "it": "sconosciuto", "ja": "不明",
                "zh": "未知"},
}

# Item id -> language of the non-English title of its pair. The non-English title is the
# parenthesised one, except for the ids in FOREIGN_MAIN, where it is the main title.
FOREIGN_TITLE: dict[str, str] = {
    "6": "zh-Latn", "16": "fr", "113": "fr", "166": "fr", "256": "fr", "462": "es", "529": "sv",
    "599": "zh-Latn", "617": "de", "638": "fr", "639": "de", "650": "sv", "675": "de", "730": "fr",
    "863": "it", "904": "fr", "927": "es", "947": "fr", "958": "zh-Latn", "1005": "fr", "1006": "de",
    "1019": "zh-Latn", "1068": "it", "1097": "fr", "1121": "fr", "1155": "fr", "1158": "fr",
    "1193": "mk-Latn", "1195": "es", "1196": "fr", "1199": "it", "1202": "de", "1214": "ja-Latn",
    "1240": "ja-Latn", "1242": "fr", "1252": "fr", "1266": "it", "1323": "zh-Latn", "1332": "fr",
    "1333": "tl", "1342": "pt", "1345": "zh-Latn", "1347": "ja-Latn", "1352": "de", "1369": "it",
    "1370": "fr", "1403": "it", "1421": "es", "1462": "fr", "1472": "fr", "1501": "ru-Latn",
    "1512": "bn-Latn", "1533": "es", "1546": "pl", "1560": "fr", "1562": "fr", "1563": "de",
    "1569": "fr", "1571": "wo", "1572": "mos", "1573": "it", "1575": "es", "1577": "fr", "1583": "pl",
    "1626": "de", "1630": "ar-Latn", "1632": "es", "1633": "is", "1634": "he-Latn", "1639": "es",
    "1652": "zh-Latn", "1682": "de",
}
FOREIGN_MAIN = frozenset({"904", "1005", "1019", "1158", "1403", "1569", "1571", "1572", "1633", "1634"})
# Two English (or release) names of one film, e.g. "Seven (Se7en)", "Independence Day (ID4)".
ENGLISH_ALIASES = frozenset({"11", "121", "198", "306", "666", "1230", "1275", "1322", "1385"})



@dataclass(frozen=True)
class TitleTable:
    """A data set's bilingual pairs: item id -> language of the foreign title; the ids whose main
    title is the foreign one; the ids whose two titles are both English (no pair)."""

    foreign_title: dict[str, str]
    foreign_main: frozenset[str]
    english_aliases: frozenset[str]


TITLES = {"ml-100k": TitleTable(FOREIGN_TITLE, FOREIGN_MAIN, ENGLISH_ALIASES),
          "ml-1m": TitleTable(movielens_1m_titles.FOREIGN_TITLE, movielens_1m_titles.FOREIGN_MAIN,
                              movielens_1m_titles.ENGLISH_ALIASES)}
ML100K_TITLES = TITLES["ml-100k"]

# Articles that MovieLens moves to the end of a title (en, fr, de, it, es, pt, sv).
ARTICLES = frozenset({"The", "A", "An", "Le", "La", "Les", "L'", "Der", "Die", "Das", "Il", "Lo", "Gli",
                      "El", "Los", "Las", "O", "Os", "Det", "Den"})
_PAREN = re.compile(r"^(?P<main>.+?)\s*\((?P<alt>[^()]+)\)$")
_YEAR = re.compile(r"\s*\(\d{4}\)$")


def front_article(title: str) -> str:
    """``"Grand bleu, Le"`` -> ``"Le Grand bleu"``; ``"Oeil de Vichy, L'"`` -> ``"L'Oeil de Vichy"``."""
    head, sep, last = title.rpartition(", ")
    if not sep or last not in ARTICLES:
        return title
    return f"{last}{head}" if last.endswith("'") else f"{last} {head}"


@dataclass(frozen=True)
class ParsedTitle:
    """A title split into its main part and its parenthesised second title, articles in front."""

    main: str
    alternate: str | None  # the parenthesised second title, articles in front


def parse_title(title: str) -> ParsedTitle:
    """Split ``Main (Alternate)``, drop a parenthesised year, put trailing articles in front."""
    title = _YEAR.sub("", title.strip())
    m = _PAREN.match(title)
    if m is None:
        return ParsedTitle(front_article(title), None)
    return ParsedTitle(front_article(m["main"].strip()), front_article(m["alt"].strip()))


def titles_by_language(item_id: str, title: str, table: TitleTable = ML100K_TITLES) -> dict[str, str]:
    """Every title the item has, keyed by language; ``"en"`` is always there.

    An item without a known English title (``Postino, Il``) gets its only title under "en",
    as the catalogue would show it.
    """
    parsed = parse_title(title)
    lang = table.foreign_title.get(item_id)
    if parsed.alternate is None or lang is None:
        return {"en": parsed.main}
    foreign, english = ((parsed.main, parsed.alternate) if item_id in table.foreign_main
                        else (parsed.alternate, parsed.main))
    return {"en": english, lang: foreign}


def bilingual_pairs(titles: dict[str, str], table: TitleTable = ML100K_TITLES) -> list[tuple[str, str, str, str]]:
    """``(item_id, language, english, foreign)`` for every real pair; ``titles`` is id -> raw title."""
    out = []
    for item_id, raw in titles.items():
        by_lang = titles_by_language(item_id, raw, table)
        out += [(item_id, lang, by_lang["en"], t) for lang, t in by_lang.items() if lang != "en"]
    return out


def genre_names(genres: tuple[str, ...], language: str) -> tuple[str, ...]:
    """MovieLens genres in ``language`` (English: as they are)."""
    return genres if language == "en" else tuple(GENRES[g][language] for g in genres)


def render(item_id: str, title: str, genres: tuple[str, ...], language: str,
           table: TitleTable = ML100K_TITLES) -> tuple[str, tuple[str, ...]]:
    """The (title, genres) of the item's ``language`` variant."""
    by_lang = titles_by_language(item_id, title, table)
    return by_lang.get(language, by_lang["en"]), genre_names(genres, language)
