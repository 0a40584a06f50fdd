"""XLA devices (TPUs, through torch_xla): the module runs on one XLA device.

torch_xla records operations lazily and runs them as a compiled graph when a value is needed or the step is cut
(``torch_xla.sync()``). Left uncut, the graph would grow with every step and be compiled anew each time, so the
strategy cuts it before each training, validation, test and predict step: the pending work of the previous step
(its backward and optimizer step) runs as one graph, the same graph every step, compiled once. This is where
Lightning's ``MpDeviceLoader`` cuts it too: at each new batch.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Optional

import torch
from typing_extensions import override

from fulmen.plugins.io.checkpoint_plugin import CheckpointIO
from fulmen.plugins.io.xla_plugin import XLACheckpointIO
from fulmen.strategies.single_device import SingleDeviceStrategy

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


def sync() -> None:
    """Run the operations recorded so far on the XLA device (``torch_xla.sync``, once ``xm.mark_step``), leaving
    the random state as it was.

    torch_xla advances its random seed at every cut as well as at every draw. Kept as it is, the random numbers of
    a step would depend on how many cuts came before it, and a resumed run (which cuts at other places: no sanity
    check, a checkpoint save fewer) would draw other dropout masks than the run it continues. Put back, the seed
    moves with the draws only, the masks still differ from step to step, and resume is exact.
    """
    import torch_xla
    import torch_xla.core.xla_model as xm

    seed = xm.get_rng_state()  # a host-side counter: reading it waits for nothing
    cut = getattr(torch_xla, "sync", None) or xm.mark_step  # torch_xla.sync since 2.5
    cut()
    xm.set_rng_state(seed)


def _cut_before(step: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(step)
    def cut_then_step(*args: Any, **kwargs: Any) -> Any:
        sync()
        return step(*args, **kwargs)

    return cut_then_step


class SingleDeviceXLAStrategy(SingleDeviceStrategy):
    """Run on one XLA device (``Trainer(accelerator="tpu", devices=1)``, or ``strategy="single_xla"``)."""

    strategy_name = "single_xla"
    # torch_xla's tensors cannot be inference tensors: validation, test and predict run under no_grad, as in
    # Lightning.
    allows_inference_mode = False

    def __init__(self, device: torch.device | str | int | None = None,
                 checkpoint_io: Optional[CheckpointIO] = None) -> None:
        if device is None or isinstance(device, int):
            device = torch.device("xla", device or 0)
        # Checkpoints hold CPU tensors, which load anywhere (XLACheckpointIO copies them there).
        super().__init__(device, checkpoint_io if checkpoint_io is not None else XLACheckpointIO())

    @override
    def setup_environment(self) -> None:
        """Take torch_xla's random generator into the seeded and checkpointed random states."""
        from fulmen.utilities.seed import use_xla_generator

        use_xla_generator()

    @override
    def wrap_training_step(self, trainer: "Trainer", module: torch.nn.Module, step: Any) -> Any:
        return _cut_before(step)

    @override
    def wrap_eval_step(self, module: torch.nn.Module, step: Any) -> Any:
        return _cut_before(step)

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any = None) -> None:
        """Write ``checkpoint`` through the checkpoint IO, after one cut: its tensors (weights, optimizer state,
        window gradients, metrics) then come to the CPU from one graph, where read one by one each would run its
        own, recomputing the shared part."""
        sync()
        super().save_checkpoint(checkpoint, filepath, storage_options)

    @override
    def teardown(self) -> None:
        """Run what the last step left pending, so the module's weights are final when fit returns."""
        sync()
        super().teardown()

    def __repr__(self) -> str:
        return f"SingleDeviceXLAStrategy(device={self.root_device})"
