"""Flow backends: OpenCV accuracy on a known motion, the ptlflow path on CPU with random
weights and with a checkpoint file saved and reloaded, colour order, errors, EPE, colours."""

from __future__ import annotations

import hashlib
import socket

import numpy as np
import pytest
import skimage.data
import torch

from stages.errors import UserError
from stages.flow.backends import make_backend, resolve_backend
from stages.flow.epe import endpoint_errors, resize_flow
from stages.flow.viz import flow_to_rgb

SHIFT = (3, 2)  # content moves by (-3, -2) px per frame: the window moves by (+3, +2)


def translated_frames(n: int = 5, h: int = 64, w: int = 96) -> torch.Tensor:
    """(n, h, w, 3) uint8 crops of a photograph, the window moving by SHIFT each frame."""
    img = skimage.data.astronaut()
    dx, dy = SHIFT
    crops = [
        img[100 + dy * t : 100 + dy * t + h, 150 + dx * t : 150 + dx * t + w] for t in range(n)
    ]
    return torch.from_numpy(np.ascontiguousarray(np.stack(crops)))


@pytest.fixture(scope="module")
def raft_small():
    return make_backend("raft_small", None, device="cpu", precision="fp32", iters=2)


@pytest.mark.parametrize("model", ["opencv-dis", "opencv-farneback"])
def test_opencv_recovers_a_translation(model):
    frames = translated_frames()
    flow = make_backend(model).predict(frames[:-1], frames[1:])
    assert flow.shape == (4, 2, 64, 96) and flow.dtype == torch.float32
    inner = flow[:, :, 8:-8, 8:-8]  # away from the borders the content left
    median = inner.flatten(2).median(dim=2).values
    assert torch.allclose(median, torch.tensor([-3.0, -2.0]).expand(4, 2), atol=0.25)
    gt = np.broadcast_to(np.array([-3.0, -2.0]).reshape(1, 2, 1, 1), inner.shape)
    err, n = endpoint_errors(inner.numpy(), gt)
    assert err / n < 0.5 < np.hypot(*SHIFT)


def test_ptlflow_random_weights_shapes_batching_and_determinism(raft_small):
    frames = translated_frames()
    batched = raft_small.predict(frames[:-1], frames[1:])
    assert batched.shape == (4, 2, 64, 96) and batched.dtype == torch.float32
    assert torch.isfinite(batched).all() and batched.abs().max() > 0
    single = torch.cat(
        [raft_small.predict(frames[i : i + 1], frames[i + 1 : i + 2]) for i in range(4)]
    )
    assert torch.allclose(batched, single, atol=1e-4 * float(batched.abs().max()) + 1e-5)
    again = make_backend("raft_small", None, device="cpu", precision="fp32", iters=2)
    assert torch.equal(again.predict(frames[:2], frames[1:3]), batched[:2])  # seeded init


def test_ptlflow_checkpoint_file_saved_and_reloaded(tmp_path):
    trained = make_backend("raft_small", None, device="cpu", precision="fp32", iters=2)
    torch.manual_seed(123)  # weights unlike the backend's seeded random init
    for p in trained.model.parameters():
        p.data = torch.randn_like(p) * 0.05 + p.data
    path = tmp_path / "raft_small_test.ckpt"
    torch.save({"state_dict": trained.model.state_dict()}, path)
    spec = resolve_backend("raft_small", str(path), device="cpu", precision="fp32", iters=2)
    assert spec.checkpoint == str(path.resolve()) and spec.checkpoint_path == path.resolve()
    assert spec.checkpoint_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert spec.identity()["iters"] == 2
    reloaded = spec.build()
    frames = translated_frames(3)
    expected = trained.predict(frames[:-1], frames[1:])
    got = reloaded.predict(frames[:-1], frames[1:])
    assert torch.allclose(got, expected, atol=1e-5)
    random_init = make_backend("raft_small", None, device="cpu", precision="fp32", iters=2)
    assert not torch.allclose(random_init.predict(frames[:-1], frames[1:]), expected, atol=1e-3)
    bad = tmp_path / "not_a_checkpoint.ckpt"
    torch.save({"weights": {}}, bad)
    with pytest.raises(UserError, match="not a ptlflow checkpoint"):
        resolve_backend("raft_small", str(bad), device="cpu").build()


def test_ptlflow_gets_bgr_in_unit_range(raft_small, monkeypatch):
    """ptlflow models expect cv2.imread's BGR order, scaled to [0, 1] (see docs/flow.md)."""
    seen = {}

    def recorder(inputs):
        seen["images"] = inputs["images"].clone()
        n, _, _, h, w = inputs["images"].shape
        return {"flows": torch.zeros(n, 1, 2, h, w)}

    monkeypatch.setattr(raft_small, "model", recorder)
    red = torch.zeros(1, 130, 140, 3, dtype=torch.uint8)
    red[..., 0] = 255  # pure red in RGB
    raft_small.predict(red, red)
    images = seen["images"]
    assert images.shape == (1, 2, 3, 130, 140)
    assert float(images[:, :, 2].min()) == 1.0  # red is the last channel in BGR
    assert float(images[:, :, :2].abs().max()) == 0.0


def test_small_frames_are_padded_for_the_correlation_pyramid(raft_small):
    """RAFT's 4-level pyramid gives NaN below 128 px a side; the backend pads and crops."""
    assert raft_small.min_side == 128
    frames = translated_frames(2, h=40, w=200)
    flow = raft_small.predict(frames[:1], frames[1:])
    assert flow.shape == (1, 2, 40, 200) and torch.isfinite(flow).all()


def test_constructing_ptlflow_models_needs_no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access while building a model")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    for name in ("raft", "raft_small"):
        backend = make_backend(name, None, device="cpu")
        assert backend.name == name and backend.model.iters == 32


def test_named_checkpoint_download_failure_is_a_user_error(monkeypatch, tmp_path):
    def offline(url, dst, hash_prefix=None, progress=True):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(UserError, match=r"--ckpt things: could not download .*--ckpt PATH"):
        resolve_backend("raft_small", "things", device="cpu")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"model": "raft_smal", "ckpt": None},
            r"--model raft_smal: unknown .*opencv-dis.*raft_small",
        ),
        ({"model": "raft_small", "ckpt": "sintel"}, r"--ckpt sintel: .*names: things"),
        ({"model": "opencv-dis", "ckpt": None, "iters": 3}, r"--iters: opencv-dis"),
        ({"model": "raft_small", "ckpt": None, "device": "cuda:7"}, r"--device cuda:7"),
        ({"model": "raft_small", "ckpt": None, "device": "cpu", "precision": "fp8"}, "--precision"),
    ],
)
def test_bad_backend_requests(kwargs, match):
    if kwargs.get("device", "").startswith("cuda") and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UserError, match=match):
        resolve_backend(**kwargs)


def test_precision_and_device_resolution():
    spec = resolve_backend("raft_small", None, device="auto", precision="auto")
    if not torch.cuda.is_available():
        assert (spec.device, spec.precision) == ("cpu", "fp32")
    assert resolve_backend("opencv-dis", "things").identity() == {
        "model": "opencv-dis",
        "checkpoint": None,
        "checkpoint_sha256": None,
        "iters": None,
        "precision": None,
        "settings": {"preset": "medium", "finest_scale": 0, "patch_size": 6, "patch_stride": 2},
    }


def test_resize_flow_scales_vectors():
    flow = np.zeros((1, 2, 4, 6), np.float32)
    flow[:, 0], flow[:, 1] = 1.5, -2.0
    big = resize_flow(flow, (8, 18))
    assert big.shape == (1, 2, 8, 18)
    assert np.allclose(big[:, 0], 4.5) and np.allclose(big[:, 1], -4.0)


def test_flow_colours():
    flow = np.zeros((2, 2, 8, 8), np.float32)
    flow[0, 0] = 4.0  # rightwards
    flow[1, 0] = -4.0  # leftwards
    flow[:, :, :, :4] = 0.0  # left half still
    rgb = flow_to_rgb(flow)
    assert rgb.shape == (2, 8, 8, 3) and rgb.dtype == np.uint8
    assert (rgb[:, :, :4] == 255).all()  # still = white
    right, left = rgb[0, 0, 7].astype(int), rgb[1, 0, 7].astype(int)
    assert np.abs(right - left).sum() > 200  # opposite directions, clearly different colours
    assert rgb[0, :, 4:].std(axis=(0, 1)).max() == 0  # one motion, one colour
