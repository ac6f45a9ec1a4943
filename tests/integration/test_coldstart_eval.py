"""The cold-start evaluation with the real encoder: its alignment on MovieLens' titles and genre
lists, and ``polyrec eval --cold-start`` end to end (needs ``make setup``'s cache)."""

import json

import numpy as np
import pytest

from polyrec.evaluation.coldstart import top1_hits


def _cached_int8_graph():
    """The worker's default int8 graph, once ``make setup`` has cached it and MovieLens-100K."""
    from encoders.artifacts import default_onnx_path
    from polyrec.datasets.paths import cache_dir

    onnx, item_file = default_onnx_path("int8"), cache_dir("data", "ml-100k") / "ml-100k.item"
    assert onnx.exists() and onnx.with_suffix(".json").exists() and item_file.exists(), \
        "needs the exported encoder and MovieLens-100K in the cache: run `make setup` (`make test` does)"
    return onnx


@pytest.mark.integration
def test_the_real_encoder_aligns_translated_movielens_titles():
    """Real multilingual-e5-small (int8) on the real ML-100K title pairs (``make setup`` caches them)."""
    from polyrec.datasets.movielens_i18n import bilingual_pairs
    from polyrec_cli.evaluation.coldstart_run import TRANSLATED

    onnx = _cached_int8_graph()
    from encoders.onnx_encoder import OnnxEncoder
    from polyrec.datasets.movielens import load_movies

    pairs = [p for p in bilingual_pairs({i: m.title for i, m in load_movies().items()}) if p[1] in TRANSLATED]
    with OnnxEncoder(onnx, provider="cpu") as encoder:
        english = encoder.encode_passages([p[2] for p in pairs])
        foreign = encoder.encode_passages([p[3] for p in pairs])
    assert len(pairs) >= 50
    assert top1_hits(english, foreign).mean() >= 0.6  # chance is 1/len(pairs)
    assert top1_hits(foreign, english).mean() >= 0.6


@pytest.mark.integration
def test_the_real_encoder_aligns_translated_genre_lists():
    """Each of the catalogue's distinct genre lists in a language vs all English lists (chance: 1/216)."""
    from polyrec.datasets.movielens import load_movies
    from polyrec.datasets.movielens_i18n import LANGUAGES, genre_names

    onnx = _cached_int8_graph()
    from encoders.onnx_encoder import OnnxEncoder

    lists = sorted({m.genres for m in load_movies().values()})
    top1 = {}
    with OnnxEncoder(onnx, provider="cpu") as encoder:
        english = encoder.encode_passages([", ".join(g) for g in lists])
        for lang in LANGUAGES[1:]:
            texts = [", ".join(genre_names(g, lang)) for g in lists]
            translated = np.array(texts) != np.array([", ".join(g) for g in lists])  # not loan words only
            top1[lang] = top1_hits(encoder.encode_passages(texts), english)[translated].mean()
    assert len(lists) > 200
    # measured with int8: zh 0.29, de 0.77, fr 0.91
    assert min(top1.values()) >= 0.2 and top1["de"] >= 0.65 and top1["fr"] >= 0.7, top1


@pytest.mark.integration
def test_polyrec_eval_cold_start_writes_its_json_plot_and_table(tmp_path, capsys, monkeypatch):
    """The whole command on the first 5,000 events (~20 s): every measure the docs describe is written."""
    from polyrec.datasets.movielens_i18n import LANGUAGES
    from polyrec_cli.main import main

    _cached_int8_graph()
    monkeypatch.delenv("POLYREC_ENCODER", raising=False)  # the default int8 graph checked above
    assert main(["eval", "--cold-start", "--limit", "5000", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "coldstart.json").read_text())
    assert (tmp_path / "coldstart.png").stat().st_size > 10_000
    assert list(result["per_language"]) == list(LANGUAGES)
    assert "genre_lists_top1" not in result["per_language"]["en"]
    for lang in LANGUAGES[1:]:
        row = result["per_language"][lang]
        assert 0 <= row["overlap@10_vs_en"] <= 1 and 0 < row["genre_lists_top1"] <= 1, lang
        assert 150 < row["genre_lists_translated"] <= 216, lang  # de keeps 26 lists as they are, ja and zh none
    assert len(result["overlap_references"]) == 2 and all(0 < v <= 1 for v in result["overlap_references"].values())
    contenders = result["contenders"]
    assert contenders["random-init"]["scored_events"] == contenders["projection-zh"]["scored_events"] > 0
    assert contenders["young"]["scored_events"] == contenders["random-init"]["scored_events"]
    whole = contenders["random-init"]["whole_stream"]  # the warm-up's events too, as information
    assert whole["scored_events"] > contenders["random-init"]["scored_events"]
    assert set(whole["recall@10_by_event"]) == set(contenders["random-init"]["recall@10_by_event"])
    assert set(result["acceptance"]) >= {"projection-zh / random-init recall@10",
                                         "projection-zh - new-item-popularity recall@10",
                                         "projection-zh - new-item-popularity-recent recall@10",
                                         "alignment top-1 en -> other, translated pairs",
                                         "exposure parity zh / en", "cold-start recall parity zh / en",
                                         "overall recall@10, projection-en / random-init"}
    assert result["young"]["young"] > 0 and result["cooccurrence"]["mf_weight"] > 0  # the worker's model
    for lang in LANGUAGES:  # exposure: some new items fit some users before their first event
        exposure = result["per_language"][lang]["exposure"]
        assert 0 < exposure["users_reached_per_item"] < 1 and exposure["parity_vs_en"] > 0, lang
        assert 0 <= exposure["consumers_reached_per_item"] <= 1, lang
    assert result["per_language"]["en"]["exposure"]["parity_vs_en"] == 1.0
    overall = result["overall"]
    assert set(overall) == {"random-init", "young", "projection-en-no-explore", "projection-en-explore-only",
                            "projection-en-promote-only", "projection-en"}
    assert len({row["scored_events"] for row in overall.values()}) == 1 and overall["random-init"]["scored_events"] > 0
    printed = capsys.readouterr().out
    assert "genres@1" in printed and "overlap references" in printed and "alignment" in printed
    assert "exposure parity" in printed and "consumers" in printed and "overall recall@10" in printed
    assert "after the warm-up" in printed and "whole stream" in printed
