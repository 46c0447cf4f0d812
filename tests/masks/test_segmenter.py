"""The learned moving-object segmenter (stages/masks/learned): features, targets, training
(loss, resume), the model file, and the `diod segmenter` / `diod masks --segmenter` commands."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch
from helpers import all_masks, run_cli, write_gt_flow_artifact
from scenes import STREET, H, W, backward_flow, forward_flow, ray_cast

from stages.artifacts import ArtifactStore
from stages.masks.learned.examples import IGNORE, invisible_ids
from stages.masks.learned.features import CHANNELS, pair_evidence
from stages.masks.learned.modelfile import load_segmenter, segmenter_state
from stages.masks.learned.network import MotionSegmenter
from stages.masks.learned.params import SegmenterTraining
from stages.masks.learned.training import MIRRORED_SIGN, Trainer, segmentation_loss
from stages.masks.motion import landing
from stages.masks.params import InstanceParams, MotionParams, segmenter_instances

CAR = (-0.9, 0.9, 12.0, 16.5, 1.5)


def _street_pair(step: float = 1.0):
    """Forward driving past facades and poles, a car ahead keeping its distance: exact
    forward flow, its backward flow (minus, exact for the static scene) and an image."""
    depth, hit = ray_cast(STREET + [CAR])
    flow = forward_flow(depth, step, own=hit == len(STREET))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (H, W), dtype=np.uint8)  # texture everywhere
    return flow, -flow, image


def _mirror(features: np.ndarray) -> np.ndarray:
    out = features[:, :, ::-1].copy()
    out[list(MIRRORED_SIGN)] *= -1
    return out


def test_features_mirror_as_the_training_augmentation_says():
    flow, back, image = _street_pair()
    params = MotionParams()
    direct = pair_evidence(flow, back, params, image, previous=(back, flow)).features
    mflow = flow[:, :, ::-1].copy()
    mflow[0] *= -1
    mimage = image[:, ::-1].copy()
    mirrored = pair_evidence(mflow, -mflow, params, mimage, previous=(-mflow, mflow)).features
    assert direct.shape == (len(CHANNELS), H, W)
    expected = _mirror(direct)
    # the robust fits sample a grid that does not mirror onto itself, so values differ
    # a little; a wrong sign convention turns the correlation negative
    for c, name in enumerate(CHANNELS):
        a, b = mirrored[c].ravel(), expected[c].ravel()
        if a.std() < 1e-6 or b.std() < 1e-6:
            assert np.allclose(a, b, atol=1e-4), name
        else:
            assert np.corrcoef(a, b)[0, 1] > 0.9, name
    assert np.abs(direct[CHANNELS.index("parallax_across")]).max() > 0.5  # sign is tested


def test_features_carry_across_resolutions():
    """Positions, flow in percent of the width and the noise regime do not depend on the
    frame size: the same scene at twice the size gives the same values."""
    flow = np.zeros((2, 48, 160), np.float32)
    flow[0] += 1.6  # 1 % of the width per frame
    big = np.zeros((2, 96, 320), np.float32)
    big[0] += 3.2
    # backward flows that miss home by 0.1 and 0.2 px: the same noise relative to the size
    small_back, big_back = -flow, -big
    small_back[1] += 0.1
    big_back[1] += 0.2
    small = pair_evidence(flow, small_back, MotionParams()).features
    large = pair_evidence(big, big_back, MotionParams()).features
    for name in ("flow_u", "x", "y", "noise"):
        c = CHANNELS.index(name)
        assert small[c].min() == pytest.approx(large[c].min(), abs=1e-4), name
        assert small[c].max() == pytest.approx(large[c].max(), abs=1e-4), name


def test_previous_pair_is_marked_where_it_exists():
    flow, back, image = _street_pair()
    c = CHANNELS.index("previous_valid")
    assert pair_evidence(flow, back, MotionParams(), image).features[c].max() == 0
    with_previous = pair_evidence(flow, back, MotionParams(), image, previous=(back, flow))
    assert with_previous.features[c].min() == 1


def test_brightness_change_is_where_the_frames_change_not_where_the_flow_says():
    """A still camera: flow invented on a patch of unchanged texture (as DIS does on
    repetitive texture) shows no change; a patch whose texture moved 1 px does, though its
    flow is zero (a mover under the flow's noise)."""
    frame = _texture(0)
    following = frame.copy()
    following[40:60, 201:221] = frame[40:60, 200:220]  # the mover, 1 px to the right
    flow = np.zeros((2, H, W), np.float32)
    flow[0, 40:60, 50:70] = 2.0  # invented motion on the static scene
    evidence = pair_evidence(flow, -flow, MotionParams(), frame, landed=following)
    change = evidence.features[CHANNELS.index("change")]
    assert np.all(change[40:60, 50:70] < 0.5)
    assert np.median(change[42:58, 203:219]) > 2.0  # asinh of the change in robust sigmas
    assert np.median(change[:30]) < 0.5
    # no sign to flip under the training's mirror (the camera is still: exactly mirrored)
    mflow = flow[:, :, ::-1] * np.float32([[[-1]], [[1]]])
    mirrored = pair_evidence(
        mflow,
        -mflow,
        MotionParams(),
        frame[:, ::-1].copy(),
        landed=following[:, ::-1].copy(),
    )
    assert np.allclose(mirrored.features[CHANNELS.index("change")], change[:, ::-1], atol=1e-5)


def test_movers_below_the_flow_noise_are_ignored_not_negatives():
    objects = [
        {"id": 1, "moving": True, "residual_flow_px": [0.1, 2.0]},
        {"id": 2, "moving": True, "residual_flow_px": [3.0, None]},
        {"id": 3, "moving": False, "residual_flow_px": [0.0, 0.0]},
    ]
    assert invisible_ids(objects, 0, noise=0.3) == {1}
    assert invisible_ids(objects, 1, noise=0.3) == set()


def test_loss_ignores_pixels_without_a_target():
    logits = torch.zeros(1, 4, 4, requires_grad=True)
    target = torch.zeros(1, 4, 4, dtype=torch.uint8)
    target[0, 0] = 1
    target[0, 3] = IGNORE
    segmentation_loss(logits, target, 1.0).backward()
    assert torch.all(logits.grad[0, 3] == 0)
    assert torch.all(logits.grad[0, :3] != 0)


def test_network_takes_any_frame_size():
    model = MotionSegmenter()
    out = model(torch.zeros(1, len(CHANNELS), 37, 101))
    assert out.shape == (1, 37, 101)


def _examples(n: int = 4):
    rng = np.random.default_rng(1)
    out = []
    for _ in range(n):
        feats = rng.normal(size=(len(CHANNELS), 24, 40)).astype(np.float16)
        target = (rng.random((24, 40)) > 0.9).astype(np.uint8)
        out.append((feats, target))
    return out


def test_a_resumed_training_reaches_the_same_weights():
    config = SegmenterTraining(steps=6, batch_size=2, crop=(16, 32), warmup=2)
    examples = _examples()
    straight = Trainer(config).run(examples)
    first = Trainer(config)
    first.run(examples, until=3)
    state = first.state_dict()
    resumed = Trainer(config)
    resumed.load_state_dict(state)
    model = resumed.run(examples)
    for a, b in zip(straight.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


# -- commands ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tiny_masks):
    """(root, store, segmenter artifact) on the tiny synth set's exact flow."""
    root, store, _ = tiny_masks
    flow = write_gt_flow_artifact(store, "synth", root, backward=True)
    from stages.masks.learned.stage import SegmenterConfig, train_segmenter

    config = SegmenterConfig(
        "synth", (flow.id,), SegmenterTraining(steps=4, batch_size=2, checkpoint_every=2)
    )
    return root, store, flow, train_segmenter(store, config)


def test_segmenter_artifact_holds_a_loadable_model(trained):
    _root, _store, flow, art = trained
    assert art.is_complete and art.params["flows"] == [flow.id]
    assert art.manifest["summary"]["steps"] == 4
    segmenter = load_segmenter(art.path / "segmenter.pt")
    assert segmenter.provenance["artifact"] == art.id
    assert not (art.path / "checkpoint.pt").exists()
    assert not (art.path / "examples").exists()  # the example stores go with the checkpoint


def test_a_killed_training_resumes_from_its_checkpoint(tiny_masks, trained, monkeypatch):
    root, store, flow, done = trained
    from stages.masks.learned import examples, stage, training

    config = stage.SegmenterConfig(
        "synth", (flow.id,), SegmenterTraining(steps=4, batch_size=2, checkpoint_every=2, seed=5)
    )
    original = training.Trainer.run

    def killed_after_first_checkpoint(self, examples, until=None, on_step=None):
        if self.step >= 2:
            raise KeyboardInterrupt
        return original(self, examples, until, on_step)

    monkeypatch.setattr(training.Trainer, "run", killed_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        stage.train_segmenter(store, config)
    monkeypatch.setattr(training.Trainer, "run", original)
    computed = []
    monkeypatch.setattr(
        stage, "video_examples", lambda *a: computed.append(a) or examples.video_examples(*a)
    )
    resumed = stage.train_segmenter(store, config)
    assert resumed.manifest.get("resumed")
    assert not computed  # the examples are read back from the killed run's store
    straight = stage.train_segmenter(
        ArtifactStore(store.workspace.parent / "fresh"),
        stage.SegmenterConfig(
            "synth",
            (
                write_gt_flow_artifact(
                    ArtifactStore(store.workspace.parent / "fresh"), "synth", root, backward=True
                ).id,
            ),
            config.training,
        ),
    )
    a = load_segmenter(resumed.path / "segmenter.pt").model.state_dict()
    b = load_segmenter(straight.path / "segmenter.pt").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fine_tuning_starts_from_the_init_models_weights(trained, tmp_path, capsys):
    """``--init``: the network starts as the given model (recorded in the artifact); a
    model whose features used other camera-fit settings is one error line."""
    _root, store, flow, art = trained
    from stages.masks.learned.stage import SegmenterConfig, train_segmenter

    start = load_segmenter(art.path / "segmenter.pt")
    barely = SegmenterTraining(steps=1, batch_size=2, lr=1e-9, warmup=0, seed=3)
    tuned = train_segmenter(store, SegmenterConfig("synth", (flow.id,), barely, init=art.id))
    assert tuned.params["init"] == art.id
    weights = load_segmenter(tuned.path / "segmenter.pt").model.state_dict()
    for name, value in start.model.state_dict().items():
        assert torch.allclose(weights[name], value, atol=1e-6), name
    assert load_segmenter(tuned.path / "segmenter.pt").provenance["init"] == art.id

    other = tmp_path / "other.pt"
    torch.save(
        segmenter_state(
            dataclasses.replace(start, motion=MotionParams(seed=start.motion.seed + 1))
        ),
        other,
    )
    ws = ["--workspace", str(store.workspace), "segmenter", "--dataset", "synth"]
    code, _, err = run_cli([*ws, "--flow", flow.id, "--init", str(other), "--steps", "1"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--init" in err and "camera-fit" in err, err
    code, _, err = run_cli([*ws, "--flow", flow.id, "--init", "nope"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--init nope" in err, err


def test_masks_with_a_segmenter_by_artifact_id_and_by_file(trained, capsys):
    root, store, flow, art = trained
    ws = str(store.workspace)
    base = ["--workspace", ws, "masks", "--dataset", "synth", "--flow", flow.id, "--workers", "0"]
    code, out, err = run_cli([*base, "--segmenter", art.id[:8]], capsys)
    assert code == 0, err
    by_id = store.latest("synth", "masks")
    assert by_id.params["method"] == "learned" and by_id.params["segmenter"] == art.id
    code, out, err = run_cli([*base, "--segmenter", str(art.path / "segmenter.pt")], capsys)
    assert code == 0, err
    by_file = store.latest("synth", "masks")
    assert by_file.params["segmenter"].startswith("sha256:")


def test_segmenter_network_on_a_gpu_gives_the_cpu_masks(trained, capsys):
    """``--device`` moves only the network; the artifact is the same (the device is not part
    of its id) and so are its masks, up to a pixel at the threshold. Without CUDA, asking
    for it is one error line."""
    _root, store, flow, art = trained
    base = ["--workspace", str(store.workspace), "masks", "--dataset", "synth"]
    base += ["--flow", flow.id, "--segmenter", art.id, "--workers", "0", "--force"]
    code, _out, err = run_cli([*base, "--device", "cpu"], capsys)
    assert code == 0, err
    on_cpu = store.latest("synth", "masks")
    cpu_masks = all_masks(on_cpu)
    code, _out, err = run_cli([*base, "--device", "cuda"], capsys)
    if not torch.cuda.is_available():
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert "--device cuda: CUDA is not available" in err
        return
    assert code == 0, err
    on_gpu = store.latest("synth", "masks")
    assert on_gpu.id == on_cpu.id
    gpu_masks = all_masks(on_gpu)
    for key, masks in cpu_masks.items():
        assert np.mean((masks > 0) != (gpu_masks[key] > 0)) < 1e-3


@pytest.mark.parametrize(
    "ref, expected",
    [("nosuch", "no such model file, nor a complete segmenter artifact"), ("FILE", "not a")],
)
def test_a_bad_segmenter_is_one_error_line(trained, tmp_path, capsys, ref, expected):
    root, store, flow, _art = trained
    if ref == "FILE":
        ref = str(tmp_path / "junk.pt")
        (tmp_path / "junk.pt").write_bytes(b"not a model")
    args = ["--workspace", str(store.workspace), "masks", "--dataset", "synth"]
    code, _out, err = run_cli([*args, "--flow", flow.id, "--segmenter", ref], capsys)
    assert code == 2
    assert expected in err and len(err.strip().splitlines()) == 1


def test_segmenter_command_without_a_flow_artifact_is_one_error_line(tmp_path, capsys):
    code, _out, err = run_cli(
        ["--workspace", str(tmp_path), "segmenter", "--dataset", "synth"], capsys
    )
    assert code == 2 and "flow" in err


# -- the built-in model on hand-built 3-D flow ----------------------------------------------
def _noisy(flow: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Flow with smooth noise of about ``sigma`` px, as a flow method leaves (DIS on our
    street frames: about 0.3 px): the model was trained on estimated flow, never on exact."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, flow.shape).astype(np.float32)
    for c in range(2):
        noise[c] = cv2.GaussianBlur(noise[c], (0, 0), 2.0)
    noise *= sigma / noise.std()
    return flow + noise


def _texture(seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 255, (H, W), np.uint8), (3, 3), 0)


class NoisyPairs:
    """A video of textured frames and, per pair, its exact forward and backward flow, each
    with its own smooth noise (a ``geometric.FlowPairs``)."""

    def __init__(
        self,
        frames: list[np.ndarray],
        forward: list[np.ndarray],
        backward: list[np.ndarray],
        sigma: float,
    ):
        self.num_frames, self.has_backward = len(frames), True
        self._frames = frames
        self._forward = [_noisy(f, sigma, 2 * t) for t, f in enumerate(forward)]
        self._backward = [_noisy(b, sigma, 2 * t + 1) for t, b in enumerate(backward)]

    @classmethod
    def steady(cls, forward: np.ndarray, backward: np.ndarray, sigma: float, frames: int = 4):
        """Every pair the same motion: frame t+1 is frame t moved along ``backward``."""
        xs, ys = landing(backward)
        images = [_texture()]
        for _ in range(frames - 1):
            images.append(cv2.remap(images[-1], xs, ys, cv2.INTER_LINEAR))
        return cls(images, [forward] * (frames - 1), [backward] * (frames - 1), sigma)

    def forward(self, t: int) -> np.ndarray:
        return self._forward[t]

    def backward(self, t: int) -> np.ndarray:
        return self._backward[t]

    def image(self, t: int) -> np.ndarray | None:
        return self._frames[t] if 0 <= t < self.num_frames else None


def _builtin_masks(pairs: NoisyPairs) -> np.ndarray:
    from stages.masks.geometric import GeometricParams, run_masks
    from stages.masks.learned.inference import LearnedMotion
    from stages.masks.learned.modelfile import BUILTIN_FILE

    segmenter = load_segmenter(BUILTIN_FILE)
    motion_of = LearnedMotion(segmenter.model, segmenter.motion, segmenter.threshold)
    params = GeometricParams(segmenter.motion, segmenter_instances(InstanceParams()))
    return run_masks(pairs, 0, 4, params, H, W, motion_of)


def _best_iou(frame: np.ndarray, truth: np.ndarray) -> float:
    ious = [((frame == k) & truth).sum() / ((frame == k) | truth).sum() for k in range(1, 256)]
    return max(ious[: frame.max()], default=0.0)


def test_builtin_driving_past_facades_and_poles_gives_no_mask():
    depth, _ = ray_cast(STREET)
    pairs = NoisyPairs.steady(forward_flow(depth, 1.0), backward_flow(STREET, 1.0), sigma=0.1)
    assert _builtin_masks(pairs).max() == 0


@pytest.mark.xfail(
    strict=True,
    reason="known miss of the builtin (docs/masks.md): on this hand-built street its "
    "probability on a car ahead keeping its distance is near 0 over most of the car; the "
    "parallax model finds it on exact flow (test_parallax.py)",
)
def test_builtin_finds_a_car_ahead_keeping_its_distance():
    depth, hit = ray_cast(STREET + [CAR])
    on_car = hit == len(STREET)
    forward = forward_flow(depth, 1.0, own=on_car)
    backward = backward_flow(STREET + [CAR], 1.0, moving=len(STREET))
    for frame in _builtin_masks(NoisyPairs.steady(forward, backward, sigma=0.1)):
        assert _best_iou(frame, on_car) > 0.5


def _sideways(region: np.ndarray, u: float) -> np.ndarray:
    """Flow (2, H, W): ``u`` px to the right on ``region``, still elsewhere."""
    flow = np.zeros((2, H, W), np.float32)
    flow[0][region] = u
    return flow


def test_builtin_finds_a_one_pixel_walker_on_a_still_camera():
    """1 px per frame against flow noise of 0.05 px (the DIS noise of our still-camera
    street frames is 0.07 px in its median): a textured 24 x 10 px person ~15 m away
    walking right over a textured, still background."""
    background, person = _texture(7), _texture(8)[:24, :10]
    walkers = [np.zeros((H, W), bool) for _ in range(4)]
    frames = [background.copy() for _ in walkers]
    for t, (walker, frame) in enumerate(zip(walkers, frames, strict=True)):
        walker[50:74, 150 + t : 160 + t] = True
        frame[walker] = person.ravel()
    forward = [_sideways(walker, 1.0) for walker in walkers[:-1]]
    backward = [_sideways(walker, -1.0) for walker in walkers[1:]]
    masks = _builtin_masks(NoisyPairs(frames, forward, backward, sigma=0.05))
    for frame, walker in zip(masks, walkers, strict=True):
        assert frame.max() == 1
        assert _best_iou(frame, walker) > 0.5
