"""What `diod hardware` says, and how many threads training takes."""

from __future__ import annotations

import pytest

from stages import hardware, machine


@pytest.mark.parametrize(
    "idle,cores,threads", [(1.96, 2, 2), (1.1, 2, 1), (0.2, 2, 1), (5.0, 2, 2), (None, 2, 2)]
)
def test_training_takes_the_idle_cores(monkeypatch, idle, cores, threads):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(hardware, "idle_cores", lambda: idle)
    monkeypatch.setattr(hardware, "usable_cores", lambda: cores)
    assert hardware.cpu_threads() == threads


def test_torchrun_processes_share_the_idle_cores(monkeypatch):
    monkeypatch.setattr(hardware, "idle_cores", lambda: 2.0)
    monkeypatch.setattr(hardware, "usable_cores", lambda: 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert hardware.cpu_threads() == 1


def test_idle_cores_reads_the_machine():
    idle = hardware.idle_cores(0.05)
    assert idle is None or 0.0 <= idle <= (hardware.os.cpu_count() or 1)


def test_hardware_names_the_cpu_class_and_the_demo_time(monkeypatch):
    monkeypatch.setattr(machine, "idle_cores", lambda: 2.0)
    lines = machine.describe()
    assert lines[0].startswith("CPU: ") and "usable cores" in lines[0]
    assert lines[1].startswith(f"CPU class: {machine.cpu_class()} (")
    assert lines[2].startswith("GPU: ")
    minutes = machine.DEMO_MINUTES[machine.cpu_class()]
    assert lines[3].startswith(f"make demo: about {minutes:.0f} min")
    monkeypatch.setattr(machine, "idle_cores", lambda: 1.0)
    assert "one thread" in machine.describe()[3]


def test_fp32_class_without_native_bf16(monkeypatch):
    monkeypatch.setattr(machine, "native_bf16", lambda device: False)
    monkeypatch.setattr(machine, "idle_cores", lambda: None)
    assert machine.cpu_class() == "fp32"
    assert "without native bf16: training runs in fp32" in machine.describe()[1]


def test_a_demo_that_distils_longer_adds_its_extra_steps(monkeypatch):
    monkeypatch.setattr(machine, "idle_cores", lambda: 2.0)
    for kind, minutes in machine.DEMO_MINUTES.items():
        assert machine.demo_minutes(kind) == minutes
        longer = machine.demo_minutes(kind, 400)
        assert longer == pytest.approx(minutes + 400 * machine.DISTILL_STEP_SECONDS[kind] / 60)
    line = machine.describe("make demo WORLD=street", 400)[3]
    assert line.startswith("make demo WORLD=street: about ")
    assert f"{machine.demo_minutes(machine.cpu_class(), 400):.0f} min" in line
