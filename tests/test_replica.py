"""The item replica skips records it cannot use instead of crashing (pure: no broker)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np

from polyrec.mf import MFConfig
from stream.replica import ItemReplica
from stream.state import ItemRecord, WorkerModel

CFG = MFConfig(dim=4, seed=0)


def record(value: bytes | None, offset: int = 0) -> SimpleNamespace:
    """The fields of an aiokafka ConsumerRecord that the replica reads."""
    return SimpleNamespace(topic="polyrec-item-factors", partition=0, offset=offset, headers=[], value=value)


def encoded(dim: int, fill: float = 0.5) -> bytes:
    rec = ItemRecord("m1", "p0", np.full(dim + 1, fill, np.float32), offset=7, count=1)
    return json.dumps(rec.to_json()).encode()


def test_unusable_records_are_counted_invalid_and_the_rest_applied():
    model = WorkerModel(CFG, history_max=10, k=3)
    outcomes = []
    replica = ItemReplica(["unused:9092"], "polyrec-item-factors", model.apply_item_record, model.knows)
    for r in (record(None), record(b"{not json"), record(encoded(8)), record(encoded(4, float("nan"))),
              record(encoded(4)), record(encoded(4))):
        outcomes.append(replica._apply(r))
    assert outcomes == ["invalid"] * 4 + ["applied", "stale"]
    assert replica.invalid == 4
    assert model.knows("p0", 7, "m1")
