"""Title parsing and language variants of MovieLens-100K and -1M items."""

import pytest

from polyrec.datasets.movielens_i18n import (
    ENGLISH_ALIASES,
    FOREIGN_MAIN,
    FOREIGN_TITLE,
    GENRES,
    LANGUAGES,
    TITLES,
    bilingual_pairs,
    front_article,
    parse_title,
    render,
    titles_by_language,
)

ML_GENRES = ("Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
             "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
             "Western", "unknown")


@pytest.mark.parametrize("raw, expected", [
    ("Grand bleu, Le", "Le Grand bleu"),
    ("Usual Suspects, The", "The Usual Suspects"),
    ("Oeil de Vichy, L'", "L'Oeil de Vichy"),
    ("Blechtrommel, Die", "Die Blechtrommel"),
    ("Sjunde inseglet, Det", "Det Sjunde inseglet"),  # case is kept as it is
    ("Paris, Texas", "Paris, Texas"),
    ("Kiss Me, Guido", "Kiss Me, Guido"),
    ("Die xue shuang xiong", "Die xue shuang xiong"),
])
def test_front_article(raw, expected):
    assert front_article(raw) == expected


def test_parse_title_splits_alternates_and_fronts_articles_on_both_sides():
    p = parse_title("Cité des enfants perdus, La (City of Lost Children, The)")
    assert (p.main, p.alternate) == ("La Cité des enfants perdus", "The City of Lost Children")
    assert parse_title("Shanghai Triad (Yao a yao yao dao waipo qiao)").alternate == "Yao a yao yao dao waipo qiao"
    assert parse_title("Postino, Il") == parse_title("Postino, Il (1994)")
    assert parse_title("Land Before Time III: The Time of the Great Giving (1995)").alternate is None


def test_titles_by_language_uses_the_table_for_the_side_and_language():
    assert titles_by_language("113", "Horseman on the Roof, The (Hussard sur le toit, Le)") == {
        "en": "The Horseman on the Roof", "fr": "Le Hussard sur le toit"}
    assert titles_by_language("1005", "Double vie de Véronique, La (Double Life of Veronique, The)") == {
        "en": "The Double Life of Veronique", "fr": "La Double vie de Véronique"}
    assert titles_by_language("11", "Seven (Se7en)") == {"en": "Seven"}  # an alias, not a pair
    assert titles_by_language("6", "Shanghai Triad (Yao a yao yao dao waipo qiao)")["zh-Latn"] == \
        "Yao a yao yao dao waipo qiao"


def test_the_dictionary_covers_every_genre_in_every_language():
    assert set(GENRES) == set(ML_GENRES)
    for genre, names in GENRES.items():
        assert set(names) == set(LANGUAGES) - {"en"}, genre
        assert all(name.strip() for name in names.values())
    for lang in ("de", "fr", "es", "ja", "zh"):
        assert len({names[lang] for names in GENRES.values()}) >= 17  # nearly all distinct


def test_tables_are_consistent():
    assert FOREIGN_MAIN <= set(FOREIGN_TITLE)
    assert not ENGLISH_ALIASES & set(FOREIGN_TITLE)
    for table in TITLES.values():
        assert table.foreign_main <= set(table.foreign_title)
        assert not table.english_aliases & set(table.foreign_title)


def test_every_ml1m_entry_is_a_title_with_a_second_title():
    """ML-1M's ids are the titles themselves: each listed one has a parenthesised second title."""
    table = TITLES["ml-1m"]
    for item_id in [*table.foreign_title, *table.english_aliases]:
        assert parse_title(item_id).alternate is not None, item_id
    assert len(table.foreign_title) == 237 and {"fr", "it", "es", "de", "zh-Latn", "ja-Latn"} <= set(
        table.foreign_title.values())


def test_ml1m_pairs_take_their_side_from_the_table():
    table = TITLES["ml-1m"]
    titles = {"Postino, Il (The Postman) (1994)": "Postino, Il (The Postman)",  # the main title is the foreign one
              "Confessional, The (Le Confessionnal) (1995)": "Confessional, The (Le Confessionnal)",
              "Seven (Se7en) (1995)": "Seven (Se7en)"}  # an alias
    assert bilingual_pairs(titles, table) == [
        ("Postino, Il (The Postman) (1994)", "it", "The Postman", "Il Postino"),
        ("Confessional, The (Le Confessionnal) (1995)", "fr", "The Confessional", "Le Confessionnal")]
    assert render("Postino, Il (The Postman) (1994)", "Postino, Il (The Postman)", ("Drama",), "it", table) == \
        ("Il Postino", ("Drammatico",))


def test_render_uses_the_real_title_in_that_language_else_english():
    title = "Tin Drum, The (Blechtrommel, Die)"
    assert render("639", title, ("Drama",), "de") == ("Die Blechtrommel", ("Drama",))
    assert render("639", title, ("Drama", "War"), "fr") == ("The Tin Drum", ("Drame", "Guerre"))
    assert render("639", title, ("Drama",), "en") == ("The Tin Drum", ("Drama",))
    # romanised Chinese is not a zh title
    assert render("6", "Shanghai Triad (Yao a yao yao dao waipo qiao)", ("Drama",), "zh") == \
        ("Shanghai Triad", ("剧情",))


def test_bilingual_pairs():
    pairs = bilingual_pairs({"639": "Tin Drum, The (Blechtrommel, Die)", "11": "Seven (Se7en)", "1": "Toy Story"})
    assert pairs == [("639", "de", "The Tin Drum", "Die Blechtrommel")]
