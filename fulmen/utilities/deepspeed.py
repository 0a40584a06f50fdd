"""One ordinary checkpoint file from a DeepSpeed checkpoint folder, to load without DeepSpeed."""

from __future__ import annotations

import os
from typing import Any, Optional, Union

import torch

from fulmen.checkpoint import io

CPU_DEVICE = torch.device("cpu")
_PATH = Union[str, "os.PathLike[str]"]
# The engine's own entries of its model-state file, which are not part of a Lightning checkpoint.
_ENGINE_KEYS = ("module", "optimizer", "lr_scheduler", "csr_tensor_module_names", "skipped_steps", "global_steps",
                "dp_world_size", "mp_world_size")


def ds_checkpoint_dir(checkpoint_dir: _PATH, tag: Optional[str] = None) -> str:
    """The folder of the engine's files inside a DeepSpeed checkpoint folder: ``<engine>/<tag>``, the tag read from
    the engine's ``latest`` file when not given. (In a fulmen folder the engine's files are under ``engine/``.)"""
    folder = os.fspath(checkpoint_dir)
    engine = os.path.join(folder, io.ENGINE_FOLDER)
    if os.path.isdir(engine):
        folder = engine
    if tag is None:
        latest = os.path.join(folder, "latest")
        if os.path.isfile(latest):
            with open(latest) as f:
                tag = f.read().strip()
        else:
            tags = [name for name in os.listdir(folder) if os.path.isdir(os.path.join(folder, name))]
            if len(tags) != 1:
                raise ValueError(f"{folder!r} has no 'latest' file naming its checkpoint tag; pass tag= (one of "
                                 f"{sorted(tags)})")
            tag = tags[0]
    directory = os.path.join(folder, tag)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"DeepSpeed checkpoint folder {directory!r} does not exist")
    return directory


def convert_zero_checkpoint_to_fp32_state_dict(checkpoint_dir: _PATH, output_file: _PATH,
                                               tag: Optional[str] = None) -> dict[str, Any]:
    """Write the checkpoint of a DeepSpeed checkpoint folder as one file whose ``state_dict`` holds every weight in
    float32, for ``load_from_checkpoint`` and ``torch.load`` without DeepSpeed; returns what was written.

    A folder fulmen wrote already holds the whole weights in its ``meta.ckpt`` (read safely, plain data only). A
    folder Lightning wrote holds them as ZeRO partitions, put together by DeepSpeed's ``zero_to_fp32``; the engine's
    model-state file it also reads holds pickled objects, so convert only folders you trust.
    """
    folder = os.fspath(checkpoint_dir)
    meta = os.path.join(folder, io.SHARDED_META)
    if os.path.isfile(meta):
        checkpoint = io.load(meta, map_location=CPU_DEVICE)
        checkpoint["state_dict"] = {k: v.float() if v.is_floating_point() else v
                                    for k, v in checkpoint["state_dict"].items()}
        checkpoint.pop("optimizer_states", None)  # stand-ins pointing at the engine's files
    else:
        checkpoint = _from_zero_partitions(folder, tag)
    io.atomic_save(checkpoint, output_file)
    return checkpoint


def _from_zero_partitions(folder: str, tag: Optional[str]) -> dict[str, Any]:
    try:
        from deepspeed.utils.zero_to_fp32 import (get_fp32_state_dict_from_zero_checkpoint, get_model_state_file,
                                                  get_optim_files)
    except ImportError as err:
        raise ModuleNotFoundError(f"{folder!r} holds DeepSpeed ZeRO partitions; putting them together needs "
                                  "deepspeed: pip install deepspeed") from err
    state_dict = get_fp32_state_dict_from_zero_checkpoint(folder, tag)
    engine_dir = ds_checkpoint_dir(folder, tag)
    optimizer_state = torch.load(get_optim_files(engine_dir)[0], map_location=CPU_DEVICE, weights_only=False)
    stage = optimizer_state["optimizer_state_dict"]["zero_stage"]
    client = torch.load(get_model_state_file(engine_dir, stage), map_location=CPU_DEVICE, weights_only=False)
    checkpoint = {key: value for key, value in client.items() if key not in _ENGINE_KEYS}
    # Checkpoints of Lightning before 2.1 name the weights under its wrapper module.
    checkpoint["state_dict"] = {key.removeprefix("_forward_module."): value for key, value in state_dict.items()}
    return checkpoint
