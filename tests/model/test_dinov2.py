"""DIOD*'s frozen DINOv2 encoder: its features against their definition, at every preset's
input size; frozen (no gradients, eval mode, never in a state dict, shared by copies);
weights read from files in the official and the timm layouts; one-line errors for a file
that is missing or does not fit; the run configuration's sizes and the weights' sha256.

No real DINOv2 weights exist offline: the files here hold random tensors in the layouts."""

from __future__ import annotations

import copy
import hashlib
import logging

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from stages.distill.ema import EmaTeacher
from stages.errors import UserError
from stages.model import DIOD, ModelConfig
from stages.model.dinov2 import FrozenDINOv2, _backbone
from stages.settings import SettingError
from stages.train.config import resolve
from stages.train.presets import PRESETS

VITS = "dinov2-vits14"
SMALL = dict(num_slots=4, encoder=VITS, decoder_channels=8, gru_hidden=16)


@pytest.fixture(scope="module")
def model() -> DIOD:
    """One random-weight DINOv2 model (building a ViT-S takes a second)."""
    torch.manual_seed(0)
    return DIOD(ModelConfig(**SMALL))


@pytest.fixture(scope="module")
def other_weights() -> dict[str, torch.Tensor]:
    """A ViT-S/14 state dict (timm layout) different from the random ``none`` network."""
    torch.manual_seed(123)
    return {k: v.clone() for k, v in _backbone(VITS).state_dict().items()}


def _official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The facebookresearch layout of a ViT-S/14: the same names as timm's plus the masked-
    image-modelling token (``dinov2_vits14_pretrain.pth``)."""
    return {**state, "mask_token": torch.zeros(1, 384)}


def _same_backbone(encoder: FrozenDINOv2, state: dict[str, torch.Tensor]) -> bool:
    got = encoder.backbone.state_dict()
    return got.keys() == state.keys() and all(torch.equal(got[k], state[k]) for k in state)


# -- features ------------------------------------------------------------------------------
def test_features_are_the_last_four_normalised_patch_grids_upsampled_to_quarter(model):
    """Against the definition, computed block by block: patch tokens of blocks 8..11, each
    through the final LayerNorm, on the (H/14, W/14) grid, concatenated, nearest x(14/4)."""
    vit = model.encoder.backbone
    x = torch.rand(2, 3, 56, 84)
    with torch.no_grad():
        tokens = vit._pos_embed(vit.patch_embed(x))
        outputs = []
        for block in vit.blocks:
            tokens = block(tokens)
            outputs.append(vit.norm(tokens)[:, 1:])  # drop the class token
        grid = [t.transpose(1, 2).reshape(2, 384, 4, 6) for t in outputs[-4:]]
        expected = F.interpolate(torch.cat(grid, 1), size=(14, 21), mode="nearest")
        got = model.encoder(x)
    assert got.shape == (2, 1536, 14, 21) and model.encoder.out_channels == 1536
    assert torch.allclose(got, expected, atol=1e-5)


def test_upsampling_is_torchs_nearest_at_every_presets_grid():
    """The channels-last gather equals ``F.interpolate(mode="nearest")`` from each preset's
    patch grid (side / 14) to its map grid (side / 4)."""
    from stages.model.dinov2 import upsample_nearest

    for preset in PRESETS:
        h, w = resolve("burnin", "folder", {"encoder": VITS}, preset=preset).data.input_size
        grid = torch.rand(1, 3, h // 14, w // 14)
        expected = F.interpolate(grid, size=(h // 4, w // 4), mode="nearest")
        got = upsample_nearest(grid.permute(0, 2, 3, 1), (h // 4, w // 4)).permute(0, 3, 1, 2)
        assert torch.equal(got, expected), preset


def test_features_come_in_the_autocast_dtype(model):
    """Under autocast they are cast before upsampling (the ConvGRU would cast them anyway)."""
    x = torch.rand(1, 3, 28, 56)
    with torch.autocast("cpu", torch.bfloat16):
        got = model.encoder(x)
    assert got.dtype == torch.bfloat16
    assert torch.allclose(got.float(), model.encoder(x), atol=0.1, rtol=0.05)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_presets_dinov2_size_runs(preset, model):
    """Each preset's DINOv2 size is a multiple of 28 near its ResNet size; the encoder gives
    1/4 maps there (one frame: the big sizes cost a second), the whole model at synth size."""
    resnet = resolve("burnin", "folder", preset=preset)
    config = resolve("burnin", "folder", {"encoder": VITS}, preset=preset)
    h, w = config.data.input_size
    assert h % 28 == 0 and w % 28 == 0 and config.model.input_multiple == 28
    assert abs(h - resnet.data.input_size[0]) <= 28 and abs(w - resnet.data.input_size[1]) <= 28
    with torch.no_grad():
        assert model.encoder(torch.rand(1, 3, h, w)).shape == (1, 1536, h // 4, w // 4)
        if preset == "synth-cpu":
            out = model.eval()(torch.rand(1, 2, 3, h, w))
            assert out.masks.shape == (1, 2, 4, h // 4, w // 4)
            assert out.recon.shape == (1, 2, 3, h, w)


def test_inputs_must_be_multiples_of_28(model):
    with pytest.raises(ValueError, match="multiples of 28"):
        model(torch.rand(1, 1, 3, 56, 70))  # 70: 5 patches, but not a multiple of 4
    with pytest.raises(UserError, match="input_size 96x320: both sides must be multiples of 28"):
        resolve("burnin", "synth", {"encoder": VITS, "input_size": (96, 320)})
    given = {"encoder": VITS, "input_size": (112, 336)}  # given sizes beat the preset's
    assert resolve("burnin", "synth", given).data.input_size == (112, 336)


def test_size_auto_gives_multiples_of_28(tiny_masks):
    from helpers import tiny_request

    from stages.train.runner import auto_size, resolve_request

    root, _store, _masks = tiny_masks  # 32x64 frames
    request = tiny_request(input_size="auto", encoder=VITS)
    config = auto_size(request, resolve_request(request), root)
    h, w = config.data.input_size
    assert h % 28 == 0 and w % 28 == 0 and (h, w) == (112, 224)  # 2:1 at about 84x308's area


def test_every_variant_is_a_timm_dinov2_vit():
    """Same code for every size: the timm model of each name (built without memory)."""
    from stages.model.dinov2 import VARIANTS

    widths = {"dinov2-vits14": 384, "dinov2-vitb14": 768, "dinov2-vitl14": 1024}
    widths["dinov2-vitg14"] = 1536
    assert set(VARIANTS) == set(widths)
    for variant, width in widths.items():
        vit = _backbone(variant, "meta")
        assert vit.patch_embed.patch_size == (14, 14) and vit.embed_dim == width
        assert vit.pos_embed.shape == (1, 1 + 37 * 37, width)  # DINOv2's 518-px grid
        assert FrozenDINOv2(variant, vit).out_channels == 4 * width


# -- frozen --------------------------------------------------------------------------------
def test_frozen_encoder_gets_no_gradients_stays_in_eval_and_is_not_in_state_dicts(model):
    model.train()
    assert model.training and not model.encoder.backbone.training
    assert not any(p.requires_grad for p in model.encoder.parameters())
    model.zero_grad(set_to_none=True)
    out = model(torch.rand(1, 2, 3, 28, 56))
    (out.recon.mean() + out.masks[:, :, 0].mean()).backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.temporal.parameters())
    state = model.state_dict()
    assert not any(k.startswith("encoder.") for k in state)
    # a state dict without the backbone loads strictly, keeping the backbone there is
    before = model.encoder.backbone.pos_embed.clone()
    model.load_state_dict(state)
    assert torch.equal(model.encoder.backbone.pos_embed, before)
    model.eval()


def test_copies_share_the_frozen_encoder_and_the_teacher_averages_the_rest(model):
    teacher = EmaTeacher(model, keep_rate=0.5)
    assert teacher.module.encoder is model.encoder
    assert teacher.module.temporal is not model.temporal
    with torch.no_grad():
        for p in model.temporal.parameters():
            p.add_(1.0)
    before = [p.clone() for p in teacher.module.temporal.parameters()]
    frozen = model.encoder.backbone.pos_embed.clone()
    teacher.update(model)
    after = list(teacher.module.temporal.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert torch.equal(model.encoder.backbone.pos_embed, frozen)
    assert copy.deepcopy(model).encoder is model.encoder


def test_random_weights_are_the_same_network_every_time_and_leave_the_rng_alone(model):
    state = torch.get_rng_state()
    again = FrozenDINOv2.build(VITS)
    assert torch.equal(torch.get_rng_state(), state)
    assert _same_backbone(again, model.encoder.backbone.state_dict())


# -- weights files -------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["official.pth", "timm.safetensors", "timm.pth"])
def test_weights_load_from_official_and_timm_files(layout, other_weights, tmp_path, caplog):
    path = tmp_path / f"dinov2_vits14_{layout}"
    if layout == "official.pth":
        torch.save(_official(other_weights), path)
    elif layout == "timm.safetensors":
        save_file(other_weights, str(path))
    else:
        torch.save({"state_dict": other_weights}, path)  # nested, as training scripts save
    with caplog.at_level(logging.INFO, logger="diod"):
        model = DIOD(ModelConfig(**SMALL, encoder_weights=str(path)))
    assert _same_backbone(model.encoder, other_weights)
    assert f"loaded DINOv2 weights from {path} ({len(other_weights)} tensors)" in caplog.text
    assert "RANDOM" not in caplog.text


def test_a_wrong_weights_file_is_one_line_naming_it(other_weights, tmp_path):
    def error(state_or_bytes, name: str) -> str:
        path = tmp_path / name
        if isinstance(state_or_bytes, bytes):
            path.write_bytes(state_or_bytes)
        else:
            torch.save(state_or_bytes, path)
        with pytest.raises(UserError) as info:
            DIOD(ModelConfig(**SMALL, encoder_weights=str(path)))
        message = str(info.value)
        assert "\n" not in message and str(path) in message
        assert "expected" in message or "not dinov2-vits14 weights" in message
        return message

    missing = {k: v for k, v in other_weights.items() if not k.startswith("blocks.11.")}
    assert "missing key(s), e.g. 'blocks.11." in error(missing, "cut.pth")
    extra = {**other_weights, "head.weight": torch.zeros(10, 384)}
    assert "1 unexpected key(s), e.g. 'head.weight'" in error(extra, "extra.pth")
    wide = {**other_weights, "norm.weight": torch.zeros(768)}  # a ViT-B's final norm
    assert "size mismatch" in error(wide, "vitb.pth")
    assert "unreadable" in error(b"not a checkpoint", "junk.pth")
    assert "not a state dict" in error([1, 2], "list.pth")
    with pytest.raises(
        SettingError, match=r"encoder_weights .*nowhere\.pth: no such file \(expected"
    ):
        DIOD(ModelConfig(**SMALL, encoder_weights=str(tmp_path / "nowhere.pth")))


def test_runs_record_the_weights_file_by_absolute_path_and_sha256(
    other_weights, tmp_path, monkeypatch
):
    path = tmp_path / "w.safetensors"
    save_file(other_weights, str(path))
    monkeypatch.chdir(tmp_path)
    config = resolve("burnin", "synth", {"encoder": VITS, "encoder_weights": "w.safetensors"})
    assert config.model.encoder_weights == str(path)
    assert config.model.encoder_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    # distillation inherits both and checks the file is still the same
    burnin = config.to_dict()
    assert resolve("distill", "synth", burnin=burnin).model == config.model
    save_file({**other_weights, "cls_token": torch.ones(1, 1, 384)}, str(path))
    with pytest.raises(SettingError, match="the file changed since this run was configured"):
        resolve("distill", "synth", burnin=burnin)
    with pytest.raises(SettingError, match="changed since"):
        DIOD(config.model)
    with pytest.raises(SettingError, match="encoder_weights w.pth: only for a DINOv2 encoder"):
        ModelConfig(encoder_weights="w.pth")
    assert resolve("burnin", "synth").model.encoder_sha256 == ""


def test_model_files_carry_the_frozen_weights_once(model, other_weights, tmp_path):
    """Self-contained: a model file runs with its weights file gone."""
    from stages import modelfile

    weights = tmp_path / "w.pth"
    torch.save(_official(other_weights), weights)
    config = ModelConfig(**SMALL, encoder_weights=str(weights)).pinned()
    trained = DIOD(config).eval()
    loaded = modelfile.LoadedModel(trained, modelfile.InputGeometry((28, 56), 0.0, 2), "model", {})
    path = modelfile.save(loaded, tmp_path / "m.pt")
    content = torch.load(path, weights_only=True)
    assert not any(k.startswith("encoder.") for k in content["weights"])
    assert content["frozen_encoder"].keys() == other_weights.keys()
    weights.unlink()
    again = modelfile.load(path).model.eval()
    assert again.config == config and _same_backbone(again.encoder, other_weights)
    frames = torch.rand(1, 2, 3, 28, 56)
    with torch.no_grad():
        assert torch.allclose(again(frames).masks, trained(frames).masks, atol=1e-6)
