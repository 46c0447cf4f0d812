"""The segmenter's example store (stages/masks/learned/example_store.py): what is read back
memory-mapped is what was written, in its order, and trains to the same weights."""

from __future__ import annotations

import numpy as np
import torch

from stages.masks.learned.example_store import is_complete, open_examples, write_examples
from stages.masks.learned.features import CHANNELS
from stages.masks.learned.params import SegmenterTraining
from stages.masks.learned.training import Trainer


def _examples(sizes: list[tuple[int, int]], seed: int = 3):
    rng = np.random.default_rng(seed)
    return [
        (
            rng.normal(size=(len(CHANNELS), h, w)).astype(np.float16),
            rng.choice(np.array([0, 1, 255], np.uint8), size=(h, w)),
        )
        for h, w in sizes
    ]


def test_examples_of_several_sizes_read_back_as_written_in_their_order(tmp_path):
    written = _examples([(24, 40), (32, 48), (24, 40), (16, 16), (32, 48)])
    assert not is_complete(tmp_path)
    assert write_examples(tmp_path, iter(written)) == len(written)
    assert is_complete(tmp_path)
    read = open_examples(tmp_path)
    assert len(read) == len(written)
    for (features, target), (f, t) in zip(written, read, strict=True):
        assert isinstance(f, np.memmap) and not f.flags.writeable
        assert f.dtype == np.float16 and t.dtype == np.uint8
        assert np.array_equal(f, features) and np.array_equal(t, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["index.json"]
        + [
            f"{k}-{s}.{e}"
            for s in ("16x16", "24x40", "32x48")
            for k, e in (("features", "f16"), ("targets", "u8"))
        ]
    )


def test_an_empty_store_opens_as_no_examples(tmp_path):
    assert write_examples(tmp_path, []) == 0
    assert open_examples(tmp_path) == []


def test_training_on_the_store_reaches_the_in_memory_weights(tmp_path):
    examples = _examples([(24, 40)] * 3 + [(20, 36)] * 2)
    write_examples(tmp_path, examples)
    config = SegmenterTraining(steps=4, batch_size=3, crop=(16, 32), warmup=1)
    in_memory = Trainer(config).run(examples).state_dict()
    mapped = Trainer(config).run(open_examples(tmp_path)).state_dict()
    assert all(torch.equal(in_memory[k], mapped[k]) for k in in_memory)
