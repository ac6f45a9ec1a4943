"""The cold-start evaluation's runner encodes what the stream would."""

import json


def test_eval_texts_are_what_the_stream_encodes_from_the_demo_records():
    from polyrec.datasets.movielens import Movie
    from polyrec_cli.demo import item_record
    from polyrec_cli.evaluation.coldstart_run import variant_texts
    from stream.items import item_with_text

    movies = {"1": Movie("1", "Toy Story", "1995", ("Animation", "Comedy")),
              "267": Movie("267", "unknown", "", ("unknown",))}
    assert variant_texts(movies, ["1", "267"], "zh") == ["Toy Story (1995). 动画, 喜剧", "unknown. 未知"]
    assert variant_texts(movies, ["1"], "en", separator=" / ") == ["Toy Story (1995). Animation / Comedy"]
    for m in movies.values():
        record = json.dumps(item_record(m, 1)).encode()
        assert variant_texts(movies, [m.item_id], "en") == [item_with_text(record, m.item_id.encode())[1]]
