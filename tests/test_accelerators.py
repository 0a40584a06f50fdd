"""Which accelerator and devices a Trainer gets, on machines faked at the one place device counts are read
(``fulmen.accelerators.cuda_count`` and ``mps_available``); and the errors that say what exists."""

from __future__ import annotations

import pytest
import torch

import fulmen
from fulmen import accelerators
from fulmen.accelerators import CPUAccelerator, CUDAAccelerator, MPSAccelerator
from fulmen.utilities.exceptions import MisconfigurationException


@pytest.fixture
def machine(monkeypatch):
    """machine(cuda=2, mps=False) makes this process see that hardware."""

    def fake(cuda: int = 0, mps: bool = False) -> None:
        monkeypatch.setattr(accelerators, "cuda_count", lambda: cuda)
        monkeypatch.setattr(accelerators, "mps_available", lambda: mps)

    return fake


def trainer(**kwargs):
    return fulmen.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                          enable_checkpointing=False, **kwargs)


def test_the_cpu_by_default(machine):
    machine()
    t = trainer()
    assert isinstance(t.accelerator, CPUAccelerator) and t.strategy.root_device == torch.device("cpu")
    assert t.device_ids == [0] and t.num_devices == 1


@pytest.mark.parametrize("accelerator", ["auto", "gpu", "cuda", "GPU"])
def test_cuda_is_chosen_when_present(machine, accelerator):
    machine(cuda=2)
    t = trainer(accelerator=accelerator, devices=1)
    assert isinstance(t.accelerator, CUDAAccelerator) and t.strategy.root_device == torch.device("cuda", 0)


@pytest.mark.parametrize("devices, index", [([1], 1), ("1,", 1), ("1", 0), (1, 0), ([0], 0)])
def test_device_indices_and_counts(machine, devices, index):
    machine(cuda=2)
    t = trainer(accelerator="cuda", devices=devices)
    assert t.strategy.root_device == torch.device("cuda", index) and t.device_ids == [index]


def test_mps_when_there_is_no_cuda(machine):
    machine(mps=True)
    assert isinstance(trainer().accelerator, MPSAccelerator)
    assert isinstance(trainer(accelerator="gpu").accelerator, MPSAccelerator)
    assert trainer(accelerator="gpu").strategy.root_device == torch.device("mps", 0)


def test_accelerator_objects(machine):
    machine(cuda=1)
    cuda = CUDAAccelerator()
    assert trainer(accelerator=cuda).accelerator is cuda

    class MyCPU(CPUAccelerator):
        pass

    assert trainer(accelerator=MyCPU()).strategy.root_device == torch.device("cpu")


@pytest.mark.parametrize("cuda, mps, kwargs, error, words", [
    (0, False, dict(accelerator="gpu"), MisconfigurationException,
     r"accelerator='gpu'\) but this machine has no CUDA or MPS device; it has: cpu"),
    (0, False, dict(accelerator="cuda"), MisconfigurationException,
     r"accelerator='cuda'\) but this machine has no cuda device; it has: cpu"),
    (0, True, dict(accelerator="cuda"), MisconfigurationException, "it has: cpu, mps"),
    (0, False, dict(accelerator="tpu"), MisconfigurationException, "torch_xla package, which is not installed"),
    (0, False, dict(accelerator=CUDAAccelerator()), MisconfigurationException,
     r"CUDAAccelerator\(\)\) but this machine has no cuda device"),
    (0, False, dict(accelerator="npu"), ValueError, "accelerator='npu'.*choose one of"),
    (0, False, dict(accelerator=object()), ValueError, "or pass an Accelerator object"),
    (2, False, dict(accelerator="cuda", devices=[3]), MisconfigurationException,
     r"names cuda device 3, but this machine has 2 cuda devices \(0, 1\)"),
    (2, False, dict(accelerator="cuda", devices=3), MisconfigurationException,
     r"asks for 3 cuda devices but this machine has 2 cuda devices \(0, 1\); pass devices=2 or fewer"),
    (2, False, dict(accelerator="cuda", devices=[1, 1]), ValueError, "names a device twice"),
    (2, False, dict(accelerator="cuda", devices=0), ValueError, r"devices=0\) must be >= 1"),
    (0, False, dict(devices=[0, 1]), ValueError, "on the CPU, devices is a number of processes"),
    (0, False, dict(devices="many"), ValueError, "devices='many'"),
])
def test_requests_for_what_is_not_there(machine, cuda, mps, kwargs, error, words):
    machine(cuda=cuda, mps=mps)
    with pytest.raises(error, match=words):
        trainer(**kwargs)


def test_errors_mention_cuda_visible_devices(machine, monkeypatch):
    machine(cuda=1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    with pytest.raises(MisconfigurationException, match=r"CUDA_VISIBLE_DEVICES='2' limits what this process sees"):
        trainer(accelerator="cuda", devices=[1])


def test_an_accelerator_class_fulmen_cannot_run_on(machine):
    machine()

    class TPUish(accelerators.Accelerator):
        @staticmethod
        def is_available():
            return True

    with pytest.raises(MisconfigurationException, match="subclass fulmen.accelerators.CPUAccelerator"):
        trainer(accelerator=TPUish())
