"""Helpers shared by the Trainer and by user code; these names match ``lightning.pytorch.utilities``."""

import torch

from fulmen.utilities.apply_to_collection import apply_to_collection, move_data_to_device
from fulmen.utilities.combined_loader import CombinedLoader
from fulmen.utilities.data import is_shared_filesystem, suggested_max_num_workers
from fulmen.utilities.enums import GradClipAlgorithmType, LightningEnum
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.grads import grad_norm
from fulmen.utilities.hparams import AttributeDict
from fulmen.utilities.parameter_tying import find_shared_parameters, set_shared_parameters
from fulmen.utilities.parsing import is_picklable
from fulmen.utilities.rank_zero import rank_zero_deprecation, rank_zero_info, rank_zero_only, rank_zero_warn
from fulmen.utilities.throughput import measure_flops
from fulmen.utilities.warnings import disable_possible_user_warnings

# The machine epsilon of each floating-point dtype.
FLOAT16_EPSILON = torch.finfo(torch.float16).eps
FLOAT32_EPSILON = torch.finfo(torch.float32).eps
FLOAT64_EPSILON = torch.finfo(torch.float64).eps

__all__ = [
    "AttributeDict",
    "CombinedLoader",
    "GradClipAlgorithmType",
    "LightningEnum",
    "MisconfigurationException",
    "apply_to_collection",
    "disable_possible_user_warnings",
    "find_shared_parameters",
    "grad_norm",
    "is_picklable",
    "is_shared_filesystem",
    "measure_flops",
    "move_data_to_device",
    "rank_zero_deprecation",
    "rank_zero_info",
    "rank_zero_only",
    "rank_zero_warn",
    "set_shared_parameters",
    "suggested_max_num_workers",
]
