"""Helpers shared by the Trainer and by user code; these names match ``lightning.pytorch.utilities``."""

from fulmen.utilities.apply_to_collection import apply_to_collection, move_data_to_device
from fulmen.utilities.combined_loader import CombinedLoader
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.hparams import AttributeDict
from fulmen.utilities.rank_zero import rank_zero_deprecation, rank_zero_info, rank_zero_only, rank_zero_warn
from fulmen.utilities.throughput import measure_flops

__all__ = [
    "AttributeDict",
    "CombinedLoader",
    "MisconfigurationException",
    "apply_to_collection",
    "measure_flops",
    "move_data_to_device",
    "rank_zero_deprecation",
    "rank_zero_info",
    "rank_zero_only",
    "rank_zero_warn",
]
