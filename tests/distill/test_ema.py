"""EMA teacher: the update's math, eval mode, no grads, unwrapping, DDP consistency."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from stages.distill.ema import EmaTeacher, unwrap
from stages.errors import UserError
from stages.train.config import DistillSettings


def small_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1)
    )


def perturb(student: nn.Module, seed: int) -> None:
    """Move every parameter and run one train-mode batch so BatchNorm statistics move too."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn(p.shape, generator=generator))
    student.train()
    student(torch.randn(2, 3, 5, 5, generator=generator))


def test_update_is_the_ema_of_parameters_and_float_buffers():
    student = small_net()
    teacher = EmaTeacher(student, keep_rate=0.9)
    before = {k: v.clone() for k, v in teacher.module.state_dict().items()}
    perturb(student, seed=1)
    teacher.update(student)
    after = teacher.module.state_dict()
    for key, value in student.state_dict().items():
        if value.is_floating_point():
            expected = 0.9 * before[key] + 0.1 * value
            torch.testing.assert_close(after[key], expected, msg=key)
        else:  # num_batches_tracked: copied, not averaged
            assert torch.equal(after[key], value), key
    assert after["1.num_batches_tracked"].item() == 1


def test_keep_rate_bounds():
    student = small_net()
    frozen = EmaTeacher(student, keep_rate=1.0)
    follower = EmaTeacher(student, keep_rate=0.0)
    original = {k: v.clone() for k, v in frozen.module.state_dict().items()}
    perturb(student, seed=2)
    frozen.update(student)
    follower.update(student)
    for key, value in frozen.module.state_dict().items():
        if value.is_floating_point():
            assert torch.equal(value, original[key])
    for key, value in follower.module.state_dict().items():
        assert torch.equal(value, student.state_dict()[key])
    with pytest.raises(UserError, match="ema 1.5: expected a number >= 0 and <= 1"):
        DistillSettings(ema=1.5)  # the keep rate is checked once, where it is declared


def test_teacher_is_a_frozen_independent_copy_in_eval_mode():
    student = small_net()
    teacher = EmaTeacher(student, keep_rate=0.996)
    assert not teacher.training and not any(m.training for m in teacher.modules())
    teacher.train()
    assert not any(m.training for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters())
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    assert not teacher(x).requires_grad
    # In eval mode BatchNorm uses running stats: a batch does not change them.
    stats = teacher.module[1].running_mean.clone()
    teacher(torch.randn(4, 3, 5, 5) * 10)
    assert torch.equal(teacher.module[1].running_mean, stats)
    with torch.no_grad():
        student[0].weight.add_(1.0)
    assert not torch.equal(teacher.module[0].weight, student[0].weight)
    assert all(p.requires_grad for p in student.parameters())


def test_unwraps_data_parallel_and_rejects_other_models():
    student = small_net()
    wrapped = nn.DataParallel(student)
    assert unwrap(wrapped) is student
    teacher = EmaTeacher(wrapped, keep_rate=0.5)
    assert isinstance(teacher.module, nn.Sequential)
    perturb(student, seed=3)
    teacher.update(wrapped)
    torch.testing.assert_close(
        teacher.module[0].bias, 0.5 * small_net()[0].bias + 0.5 * student[0].bias
    )
    with pytest.raises(ValueError, match="do not match"):
        teacher.update(nn.Sequential(nn.Conv2d(3, 4, 3)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        student = nn.parallel.DistributedDataParallel(small_net())
        teacher = EmaTeacher(student, keep_rate=0.9)
        optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
        generator = torch.Generator().manual_seed(100 + rank)  # a different batch per rank
        for _ in range(3):
            batch = torch.randn(2, 3, 5, 5, generator=generator) * (rank + 1)
            optimizer.zero_grad()
            student(batch).square().mean().backward()
            optimizer.step()
            teacher.update(student)
        torch.save(
            {
                "teacher": teacher.module.state_dict(),
                "student_stats": student.module[1].running_mean.clone(),
            },
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def test_ddp_teachers_identical_on_every_rank(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    # The students' BatchNorm statistics did diverge (local batches) ...
    assert not torch.equal(rank0["student_stats"], rank1["student_stats"])
    # ... yet the teachers are bit-identical.
    for key, value in rank0["teacher"].items():
        assert torch.equal(value, rank1["teacher"][key]), key
