"""The frozen DINOv2 encoder of DIOD* (SPEC.md section 2, docs/model.md "DIOD*").

A timm ViT/14 built with ``pretrained=False`` (weights only ever come from a local file, or
are random for smoke runs) that never trains: no gradients, always in eval mode, its forward
under ``no_grad``. Per frame, the last four blocks' tokens, each through the final
LayerNorm, patch tokens only, are concatenated (4 x 384 = 1536 channels for ViT-S), laid out
on the patch grid (H/14, W/14) and nearest-upsampled to the 1/4 map grid, as the authors'
DINOv2 model does; the ConvGRU, slot attention, the x4 decoder and the losses are then the
ResNet model's, unchanged. Input sides are therefore multiples of 28 = lcm(14, 4).

The position embeddings stay at DINOv2's pretraining grid (518 px, 37 x 37 patches) and are
interpolated to each input's grid at run time (timm's ``dynamic_img_size``), as DINOv2
itself does: the network does not depend on the run's input size, like the rest of DIOD.

Frozen weights are stored once. They are left out of the module's state dict (checkpoints
hold what trains; the weights file is named by path and sha256 in the model config) and a
state dict without them loads onto the weights already there; a copy of the model (the EMA
teacher) shares this module instead of duplicating it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from stages.artifacts import file_sha256
from stages.errors import UserError
from stages.progress import log
from stages.settings import SettingError

# our encoder name -> timm model name (same code for every size)
VARIANTS = {
    "dinov2-vits14": "vit_small_patch14_dinov2",
    "dinov2-vitb14": "vit_base_patch14_dinov2",
    "dinov2-vitl14": "vit_large_patch14_dinov2",
    "dinov2-vitg14": "vit_giant_patch14_dinov2",
}
PATCH = 14
MAP_STRIDE = 4  # the maps the slots attend over are at 1/4 of the input, as with ResNet-18
LAST_BLOCKS = 4  # blocks whose normalised patch tokens are concatenated (the authors': 4)
PRETRAIN_SIZE = 518  # DINOv2's position-embedding grid: 37 x 37 patches
RANDOM_SEED = 0  # ``none``: the same random network every time it is built (resume, export)
NO_WEIGHTS = "none"
_OFFICIAL = {name: f"{name.replace('-', '_')}_pretrain.pth" for name in VARIANTS}


def is_dinov2(encoder: str) -> bool:
    return encoder in VARIANTS


# -- the weights file ----------------------------------------------------------------------
def expected(variant: str) -> str:
    """What a weights file of ``variant`` is, for error messages."""
    return (
        f"{variant} weights: the official facebookresearch {_OFFICIAL[variant]} state dict or a "
        f"timm {VARIANTS[variant]} .safetensors/.pth checkpoint"
    )


def pin(variant: str, weights: str, sha256: str) -> tuple[str, str]:
    """(absolute path, sha256) of an ``encoder_weights`` setting: the file a run uses, named
    so that resuming from elsewhere finds it and a changed file is noticed. A missing file,
    or one whose hash is not the recorded ``sha256`` (when given), is a SettingError."""
    if weights == NO_WEIGHTS:
        return weights, ""
    path = Path(weights).expanduser().resolve()
    if not path.is_file():
        raise SettingError(
            "encoder_weights", f" {weights}: no such file (expected {expected(variant)})"
        )
    digest = file_sha256(path)
    if sha256 and digest != sha256:
        raise SettingError(
            "encoder_weights",
            f" {path}: the file changed since this run was configured (sha256 {sha256[:12]}..., "
            f"now {digest[:12]}...); restore it or start a new run",
        )
    return str(path), digest


def read_state_dict(path: Path, variant: str) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` or ``.pth`` file, on the CPU (loaded as plain
    tensors: reading a file runs no code)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch and safetensors raise many types for a foreign file
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        raise UserError(f"{path}: unreadable ({reason}); expected {expected(variant)}") from None
    if not isinstance(state, Mapping) or not state:
        raise UserError(f"{path}: not a state dict; expected {expected(variant)}")
    return dict(state)


# -- the network ---------------------------------------------------------------------------
def _backbone(variant: str, device: str | torch.device = "cpu") -> nn.Module:
    """timm's ViT/14 of ``variant``, without classifier, its position embeddings on DINOv2's
    518-px grid and interpolated to each input's (``dynamic_img_size``). On the meta
    device it holds no memory (to be given weights, or to be inspected)."""
    import timm  # imported here: a second or two that ResNet runs need not pay

    with torch.device(device):
        return timm.create_model(
            VARIANTS[variant],
            pretrained=False,
            img_size=PRETRAIN_SIZE,
            dynamic_img_size=True,
            num_classes=0,
        )


def _load(
    variant: str, state: Mapping[str, torch.Tensor], source: str, remap: bool
) -> tuple[nn.Module, int]:
    """The backbone of ``variant`` with the weights ``state``: built without initialising
    (on the meta device), then given the tensors. ``remap``: pass them through timm's own
    filter, which renames the official DINOv2 layout (and a ViT-g's packed SwiGLU) to
    timm's. A state dict that does not fit is one UserError naming ``source``."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    backbone = _backbone(variant, "meta")
    try:
        # timm's filter also unwraps a state dict nested under "model" or "state_dict"
        tensors = checkpoint_filter_fn(dict(state), backbone) if remap else dict(state)
        tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
        result = backbone.load_state_dict(tensors, strict=False, assign=True)
    except Exception as exc:  # a shape that does not fit, a tensor where a dict should be
        reason = (str(exc).replace("\n", " ").replace("\t", ""))[:160]
        raise UserError(f"{source}: not {expected(variant)} ({reason})") from None
    if result.missing_keys or result.unexpected_keys:
        found = [
            f"{len(keys)} {what} key(s), e.g. {keys[0]!r}"
            for what, keys in (
                ("missing", result.missing_keys),
                ("unexpected", result.unexpected_keys),
            )
            if keys
        ]
        raise UserError(f"{source}: not {expected(variant)} ({'; '.join(found)})")
    return backbone, len(tensors)


class FrozenDINOv2(nn.Module):
    """Frames (N, 3, H, W), ImageNet-normalised -> (N, 4 x width, H/4, W/4) features."""

    INPUT_MULTIPLE = math.lcm(PATCH, MAP_STRIDE)

    def __init__(self, variant: str, backbone: nn.Module):
        super().__init__()
        self.variant = variant
        self.backbone = backbone.requires_grad_(False).eval()
        self.out_channels = LAST_BLOCKS * backbone.embed_dim
        self.register_state_dict_post_hook(_drop_frozen)
        self.register_load_state_dict_pre_hook(_keep_frozen)

    @classmethod
    def build(
        cls,
        variant: str,
        weights: str = NO_WEIGHTS,
        sha256: str = "",
        state: Mapping[str, torch.Tensor] | None = None,
    ) -> FrozenDINOv2:
        """From ``state`` (a model file's copy of the weights, timm layout) when given, else
        from the file ``weights`` (checked against ``sha256`` when given), else random."""
        if state is not None:
            backbone, _ = _load(variant, state, "the model file's frozen encoder", remap=False)
        elif weights != NO_WEIGHTS:
            path, _ = pin(variant, weights, sha256)
            backbone, count = _load(variant, read_state_dict(Path(path), variant), path, remap=True)
            log.info("loaded DINOv2 weights from %s (%d tensors)", path, count)
        else:
            with torch.random.fork_rng(devices=[]):  # the same network each time, RNG untouched
                torch.manual_seed(RANDOM_SEED)
                backbone = _backbone(variant)
            log.warning(
                "%s has RANDOM weights (--encoder-weights none): its features mean nothing; "
                "for tests and smoke runs only, give --encoder-weights FILE for DIOD*",
                variant,
            )
        return cls(variant, backbone)

    def train(self, mode: bool = True) -> FrozenDINOv2:
        """The backbone stays in eval mode whatever the model around it does."""
        super().train(mode)
        self.backbone.eval()
        return self

    def __deepcopy__(self, memo: dict) -> FrozenDINOv2:
        """Copies of a model share the frozen encoder: its weights never change, and an EMA
        teacher would otherwise hold a second copy of them."""
        return self

    def frozen_state_dict(self) -> dict[str, torch.Tensor]:
        """The backbone's weights (timm layout), for a self-contained model file."""
        return {k: v.detach() for k, v in self.backbone.state_dict().items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        with torch.no_grad():
            blocks = self.backbone.forward_intermediates(
                x, indices=LAST_BLOCKS, norm=True, output_fmt="NLC", intermediates_only=True
            )
            tokens = torch.cat(blocks, dim=-1)  # (N, h*w, 4 x width), patch tokens only
            device = x.device.type
            if torch.is_autocast_enabled(device):
                # the dtype the ConvGRU's convolution casts them to anyway: half the bytes
                tokens = tokens.to(torch.get_autocast_dtype(device))
            grid = tokens.unflatten(1, (height // PATCH, width // PATCH))
            maps = upsample_nearest(grid, (height // MAP_STRIDE, width // MAP_STRIDE))
            return maps.permute(0, 3, 1, 2)  # NCHW, laid out channels-last


def upsample_nearest(grid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour upsampling of channels-last maps (N, h, w, C) -> (N, H, W, C):
    out[i, j] = in[floor(i h / H), floor(j w / W)], ``F.interpolate``'s "nearest". Gathering
    whole C-vectors is ~10x faster on a CPU than ``F.interpolate`` on (N, C, h, w) at the
    non-integer factor 14/4 (measured: 0.07 s against 0.8 s for 16 frames at 84x308)."""
    h, w = grid.shape[1:3]
    rows = torch.arange(size[0], device=grid.device) * h // size[0]
    cols = torch.arange(size[1], device=grid.device) * w // size[1]
    return grid[:, rows][:, :, cols]


def _drop_frozen(module: FrozenDINOv2, state: dict, prefix: str, metadata: dict) -> None:
    """State dicts hold what trains: the backbone's weights live in their file."""
    for key in [k for k in state if k.startswith(prefix + "backbone.")]:
        del state[key]


def _keep_frozen(module: FrozenDINOv2, state: dict, prefix: str, *_args) -> None:
    """A state dict without the backbone (all of ours) loads onto the backbone there is."""
    for key, tensor in module.backbone.state_dict(prefix=prefix + "backbone.").items():
        state.setdefault(key, tensor)
