"""`diod train --init`: weights from another model, matching tensors only; distillation
straight from a model (the authors' KITTI recipe)."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_request

from stages.errors import UserError
from stages.model import DIOD, ModelConfig
from stages.train.initialise import init_source, load_matching

PAPER_TINY = dict(token_norm="map", decoder_layers="6", slot_init="shared", qkv_bias=True)


def _paper_model(map_size: tuple[int, int]) -> DIOD:
    config = ModelConfig(num_slots=4, encoder_width=0.125, map_size=map_size, **PAPER_TINY)
    return DIOD(config)


def test_matching_tensors_load_and_the_map_sized_norm_is_reinitialised():
    """A model trained at another map size: everything but the per-position token norm
    loads (as their KITTI run loading the TRI-PD model)."""
    torch.manual_seed(0)
    source = _paper_model((8, 12))
    torch.manual_seed(1)
    target = _paper_model((4, 6))
    fresh_norm = target.tokenizer.norm.weight.clone()
    report = load_matching(target, source.state_dict(), "6")
    assert report["reinitialised"] == ["tokenizer.norm.bias", "tokenizer.norm.weight"]
    assert report["unused"] == ["tokenizer.norm.bias", "tokenizer.norm.weight"]
    assert report["loaded"] == report["tensors"] - 2
    assert torch.equal(target.decoder.net[0].weight, source.decoder.net[0].weight)
    assert torch.equal(target.initial_slots, source.initial_slots)
    assert torch.equal(target.tokenizer.norm.weight, fresh_norm)


def test_a_source_with_nothing_in_common_is_an_error():
    model = DIOD(ModelConfig(num_slots=4, encoder_width=0.125))
    with pytest.raises(UserError, match="no tensor of the source fits"):
        load_matching(model, {"other.weight": torch.zeros(3)}, "4")


def test_a_decoder_of_another_layout_stays_fresh():
    """4 and 4h have the same layers in another order: names and shapes all match, so only
    the recorded layout can keep the source's decoder out."""
    torch.manual_seed(0)
    source = DIOD(ModelConfig(num_slots=4, encoder_width=0.125, decoder_layers="4"))
    torch.manual_seed(1)
    target = DIOD(ModelConfig(num_slots=4, encoder_width=0.125, decoder_layers="4h"))
    fresh = {k: v.clone() for k, v in target.decoder.state_dict().items()}
    report = load_matching(target, source.state_dict(), "4")
    assert report["reinitialised"] == sorted(f"decoder.{k}" for k in fresh)
    assert all(torch.equal(v, target.decoder.state_dict()[k]) for k, v in fresh.items())
    assert torch.equal(target.initial_slots, source.initial_slots)
    same = DIOD(ModelConfig(num_slots=4, encoder_width=0.125, decoder_layers="4"))
    assert load_matching(same, source.state_dict(), "4")["reinitialised"] == []


def test_unreadable_or_foreign_files_are_one_line_errors(tmp_path, tiny_masks):
    _root, store, _masks = tiny_masks
    with pytest.raises(UserError, match="file not found"):
        init_source(store, str(tmp_path / "missing.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="unreadable"):
        init_source(store, str(junk))
    other = tmp_path / "other.pt"
    torch.save({"weights": {}}, other)
    with pytest.raises(UserError, match="expected a diod model file"):
        init_source(store, str(other))
    with pytest.raises(UserError, match="--init zzzz: no complete burnin, distill or xmod"):
        init_source(store, "zzzz")


def test_burnin_from_a_model_file_records_its_source(tiny_masks, tmp_path):
    from stages import modelfile
    from stages.train import checkpoint, train

    _root, store, _masks = tiny_masks
    first = train(store, tiny_request(steps=2))
    path = modelfile.save(modelfile.from_artifact(first), tmp_path / "first.pt")
    again = train(store, tiny_request(steps=2, init=str(path)))
    assert again.id != first.id
    init = again.manifest["summary"]["init"]
    assert init["source"]["file"] == str(path.resolve()) and init["reinitialised"] == []
    assert again.params["init"]["sha256"] == init["source"]["sha256"]
    # step 0 of the new run was the first run's network: its first update started there
    start = checkpoint.model_from(checkpoint.final(first)).state_dict()
    assert init["loaded"] == len(start)


def test_distillation_straight_from_a_model_uses_this_datasets_masks(tiny_masks):
    from stages.train import train

    _root, store, masks = tiny_masks
    burnin = train(store, tiny_request(steps=2))
    art = train(store, tiny_request("distill", steps=2, init=burnin.id))
    assert art.upstream == {"masks": masks.id}
    assert art.params["init"] == {"artifact": f"synth/burnin/{burnin.id}", "network": "model"}
    with pytest.raises(UserError, match="--init and --burnin"):
        train(store, tiny_request("distill", steps=2, init=burnin.id, burnin=burnin.id))
