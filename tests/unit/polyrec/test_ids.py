import numpy as np

from polyrec.ids import IdIndex, id_normals


def test_index_assigns_rows_in_first_seen_order():
    idx = IdIndex()
    assert idx.add_many(["b", "a", "b", "c"]).tolist() == [0, 1, 0, 2]
    assert idx.rows(["c", "zz"]).tolist() == [2, -1]
    assert idx.id_at([1, 0]) == ["a", "b"] and "a" in idx and len(idx) == 3


def test_id_normals_are_a_pure_function_of_id_and_seed():
    a = id_normals(["x", "y"], 16, seed=3, std=0.5)
    assert np.array_equal(a, id_normals(["y", "x"], 16, seed=3, std=0.5)[::-1])
    assert not np.allclose(a, id_normals(["x", "y"], 16, seed=4, std=0.5))
    big = id_normals([str(n) for n in range(4000)], 8, seed=0, std=0.5)
    assert abs(big.mean()) < 0.02 and abs(big.std() - 0.5) < 0.02


def test_a_discarded_id_keeps_its_row_anonymous_and_comes_back_on_a_new_one():
    index = IdIndex(["a", "b", "c"])
    assert index.discard(["b", "zz"]).tolist() == [1, -1]
    assert "b" not in index and index.ids == ["a", "", "c"] and index.rows(["b"]).tolist() == [-1]
    assert index.add_many(["b", "c"]).tolist() == [3, 2]  # the old row is never handed out again
    assert index.discard(["b"]).tolist() == [3] and index.discard(["b"]).tolist() == [-1]  # safe to repeat
    assert index.discard(["c", "c"]).tolist() == [2, 2] and "c" not in index  # one id twice in one call
