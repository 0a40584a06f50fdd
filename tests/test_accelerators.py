"""Which accelerator and devices a Trainer gets, on machines faked at the one place device counts are read
(``fulmen.accelerators.devices.cuda_count``, ``mps_available`` and the ``xla_*`` functions); and the errors that say what
exists."""

from __future__ import annotations

import pytest
import torch

import fulmen
from fulmen.accelerators import Accelerator, CPUAccelerator, CUDAAccelerator, MPSAccelerator, XLAAccelerator, devices
from fulmen.strategies import SingleDeviceStrategy, SingleDeviceXLAStrategy
from fulmen.utilities.exceptions import MisconfigurationException


@pytest.fixture
def machine(monkeypatch):
    """machine(cuda=2, mps=False, xla=0, xla_type=None) makes this process see that hardware; ``xla_type`` ('TPU',
    'CPU') says that torch_xla is installed and what its runtime runs on."""

    def fake(cuda: int = 0, mps: bool = False, xla: int = 0, xla_type=None) -> None:
        monkeypatch.setattr(devices, "cuda_count", lambda: cuda)
        monkeypatch.setattr(devices, "mps_available", lambda: mps)
        monkeypatch.setattr(devices, "xla_available", lambda: xla_type is not None)
        monkeypatch.setattr(devices, "xla_device_type", lambda: xla_type)
        monkeypatch.setattr(devices, "xla_count", lambda: xla)

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

    class TPUish(Accelerator):
        @staticmethod
        def is_available():
            return True

    with pytest.raises(MisconfigurationException, match="subclass fulmen.accelerators.CPUAccelerator"):
        trainer(accelerator=TPUish())


# ---------------------------------------------------------------------------------------------- XLA (TPUs)
def test_auto_takes_a_tpu_after_cuda_and_mps(machine):
    machine(xla=4, xla_type="TPU")
    t = trainer()
    assert isinstance(t.accelerator, XLAAccelerator) and isinstance(t.strategy, SingleDeviceXLAStrategy)
    assert t.strategy.root_device == torch.device("xla", 0) and t.device_ids == [0]
    machine(cuda=1, xla=4, xla_type="TPU")
    assert isinstance(trainer().accelerator, CUDAAccelerator)
    # torch_xla on the CPU (PJRT_DEVICE=CPU) runs only when asked for.
    machine(xla=1, xla_type="CPU")
    assert isinstance(trainer().accelerator, CPUAccelerator)
    assert isinstance(trainer(accelerator="tpu").strategy, SingleDeviceXLAStrategy)


@pytest.mark.parametrize("kwargs, device", [
    (dict(accelerator="tpu"), 0), (dict(accelerator="TPU", devices=[2]), 2), (dict(accelerator="tpu", devices=1), 0),
    (dict(accelerator="tpu", strategy="single_xla"), 0), (dict(accelerator="tpu", strategy="single_tpu"), 0),
    (dict(accelerator=XLAAccelerator(), devices="3,"), 3),
    (dict(accelerator="tpu", strategy=SingleDeviceXLAStrategy(torch.device("xla", 1))), 1),
])
def test_one_xla_device(machine, kwargs, device):
    machine(xla=4, xla_type="TPU")
    t = trainer(**kwargs)
    assert isinstance(t.strategy, SingleDeviceXLAStrategy) and t.strategy.root_device == torch.device("xla", device)
    assert not t.strategy.allows_inference_mode  # XLA tensors cannot be inference tensors: no_grad instead


@pytest.mark.parametrize("xla, xla_type, kwargs, words", [
    (0, None, dict(accelerator="tpu"), r"torch_xla package, which is not installed; this machine has: cpu"),
    (0, "CPU", dict(accelerator="tpu"), r"accelerator='tpu'\) but this machine has no xla device"),
    (4, "TPU", dict(accelerator="tpu", devices=2), "fulmen runs on one XLA device.*Pass devices=1"),
    (4, "TPU", dict(accelerator="tpu", devices=-1), "fulmen runs on one XLA device"),
    (4, "TPU", dict(accelerator="tpu", devices=[5]), "names xla device 5, but this machine has 4 xla devices"),
    (4, "TPU", dict(accelerator="tpu", strategy="ddp"), "strategy='ddp'.*DDP, FSDP, DeepSpeed"),
    (4, "TPU", dict(accelerator="tpu", strategy="xla"), "strategy='xla'.*Lightning's 'xla' strategy"),
    (4, "TPU", dict(accelerator="tpu", strategy=SingleDeviceStrategy("cpu")), "pass.*SingleDeviceXLAStrategy"),
    (4, "TPU", dict(accelerator="tpu", precision="16-mixed"), "precision='16-mixed'.*use 'bf16-mixed'"),
    (4, "TPU", dict(accelerator="tpu", precision=64), "precision=64.*not run on XLA devices"),
    (4, "TPU", dict(accelerator="cpu", strategy="single_xla"), "strategy='single_xla'.*pass accelerator='tpu'"),
])
def test_xla_requests_that_cannot_run(machine, xla, xla_type, kwargs, words):
    machine(xla=xla, xla_type=xla_type)
    with pytest.raises(MisconfigurationException, match=words):
        trainer(**kwargs)


def test_bf16_on_xla(machine):
    machine(xla=1, xla_type="TPU")
    assert trainer(accelerator="tpu", precision="bf16-mixed").precision_plugin.device == "xla"
    assert trainer(accelerator="tpu", precision="bf16-true").precision_plugin.dtype == torch.bfloat16


def test_parallel_devices_of_each_kind():
    assert CUDAAccelerator.get_parallel_devices([0, 2]) == [torch.device("cuda", 0), torch.device("cuda", 2)]
    assert MPSAccelerator().get_parallel_devices([0]) == [torch.device("mps", 0)]
    assert XLAAccelerator.get_parallel_devices([1]) == [torch.device("xla", 1)]
    assert CPUAccelerator.get_parallel_devices(2) == [torch.device("cpu")] * 2
