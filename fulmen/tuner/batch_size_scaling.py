"""The batch size finder (``Tuner.scale_batch_size`` and the ``BatchSizeFinder`` callback): the largest batch
size with which a few batches run without running out of memory."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional


from fulmen.trainer.states import RunningStage, TrainerFn
from fulmen.tuner.trial import reload_data, trial
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.memory import garbage_collection_cuda, is_oom_error
from fulmen.utilities.parsing import lightning_setattr
from fulmen.utilities.rank_zero import rank_zero_info

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


def find_batch_size(trainer: "Trainer", fn: TrainerFn, mode: str, steps_per_trial: int, init_val: int, max_trials: int,
                    batch_arg_name: str, margin: float, max_val: int) -> int:
    """Try batch sizes, each for ``steps_per_trial`` batches: doubling from ``init_val`` (halving while even that
    does not fit) until one runs out of memory, then, in "binsearch" mode, bisecting between the last that fit and
    the first that did not. At most ``max_trials`` trials; never above ``max_val`` or the dataset's length.

    Returns the largest size that fit (less ``margin`` in "binsearch" mode, as in Lightning) and leaves it set as
    ``batch_arg_name`` on the module or datamodule."""
    module = trainer.lightning_module
    fits, fails = 0, None  # the largest size that fit, the smallest that did not
    size = min(init_val, max_val)
    for _ in range(max_trials):
        lightning_setattr(module, batch_arg_name, size)
        try:
            length = _try(trainer, fn, steps_per_trial)
            fits = size
            rank_zero_info(f"Batch size {size} fits")
        except RuntimeError as err:  # torch.cuda.OutOfMemoryError is a RuntimeError
            if not is_oom_error(err):
                raise
            del err  # its traceback holds the frames, and with them the tensors of the failed step
            garbage_collection_cuda()
            fails, length = size, None
            rank_zero_info(f"Batch size {size} runs out of memory")
        if fails is None:  # nothing failed yet: double, unless a limit is reached
            if size >= max_val or (length is not None and size >= length):
                break
            size = min(2 * size, max_val)
        elif fits == 0:  # not even the first fit: halve
            if size == 1:
                break
            size //= 2
        elif mode == "binsearch" and fails - fits > 1:
            size = (fits + fails) // 2
        else:
            break
    if fits == 0:
        raise MisconfigurationException(
            f"The batch size finder found no {batch_arg_name} that fits in memory (down to {size}); make the "
            "model or its inputs smaller, or use a device with more memory")
    found = max(1, int(fits * (1 - margin))) if mode == "binsearch" else fits
    lightning_setattr(module, batch_arg_name, found)
    rank_zero_info(f"The batch size finder set {batch_arg_name}={found}"
                   + (f" ({fits} less a margin of {margin:.0%})" if found != fits else ""))
    return found


def _try(trainer: "Trainer", fn: TrainerFn, steps: int) -> Optional[int]:
    """One trial at the current batch size; returns the length of the dataset it read, if it has one."""
    from fulmen.loops.data import eval_data
    from fulmen.loops.evaluation_loop import run_evaluation
    from fulmen.loops.fit_loop import run_fit
    from fulmen.loops.prediction_loop import run_predict

    stage = {TrainerFn.VALIDATING: RunningStage.VALIDATING, TrainerFn.TESTING: RunningStage.TESTING,
             TrainerFn.PREDICTING: RunningStage.PREDICTING}.get(fn)
    reload_data(trainer)
    with trial(trainer, [], max_steps=steps):
        if stage is None:
            trainer.limit_train_batches = 1.0  # as Lightning: the steps may go past the user's limit
            run_fit(trainer)
            loaders = [trainer.train_dataloader]
        else:
            setattr(trainer, f"limit_{stage.dataloader_prefix}_batches", steps)
            if stage == RunningStage.PREDICTING:
                run_predict(trainer, return_predictions=False)
            else:
                run_evaluation(trainer, stage)
            loaders = eval_data(trainer, stage).loaders
    dataset = getattr(loaders[0], "dataset", None) if loaders else None
    try:
        return len(dataset)  # type: ignore[arg-type]
    except TypeError:  # an iterable dataset, or none
        return None
