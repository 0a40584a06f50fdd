"""LightningDataModule: the data of a run, in one object with the four dataloader hooks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Optional, Union

from torch.utils.data import DataLoader, Dataset, IterableDataset
from typing_extensions import override

from fulmen.core.hooks import CheckpointHooks, DataHooks
from fulmen.core.mixins.hparams_mixin import HyperparametersMixin
from fulmen.core.saving import _class_only
from fulmen.utilities.exceptions import MisconfigurationException

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


class LightningDataModule(DataHooks, CheckpointHooks, HyperparametersMixin):
    """Download, split and load the data: override ``setup`` and the ``*_dataloader`` methods.

    The Trainer calls ``prepare_data`` (once per node), ``setup(stage)``, the dataloader hooks it needs, and
    ``teardown(stage)`` — each before the callbacks' and the module's hook of the same name.
    """

    name: Optional[str] = None
    CHECKPOINT_HYPER_PARAMS_KEY = "datamodule_hyper_parameters"
    CHECKPOINT_HYPER_PARAMS_NAME = "datamodule_hparams_name"
    CHECKPOINT_HYPER_PARAMS_TYPE = "datamodule_hparams_type"

    def __init__(self) -> None:
        super().__init__()
        self.trainer: Optional["Trainer"] = None

    @override
    def train_dataloader(self) -> Any:
        """The training data."""
        raise MisconfigurationException(
            f"{type(self).__name__} has no `train_dataloader()`; define it to fit with this datamodule"
        )

    @override
    def test_dataloader(self) -> Any:
        """The test data."""
        raise MisconfigurationException(
            f"{type(self).__name__} has no `test_dataloader()`; define it to test with this datamodule"
        )

    @override
    def predict_dataloader(self) -> Any:
        """The prediction data."""
        raise MisconfigurationException(
            f"{type(self).__name__} has no `predict_dataloader()`; define it to predict with this datamodule"
        )

    @_class_only
    def load_from_checkpoint(cls, checkpoint_path: Union[str, Any], map_location: Any = None,
                             hparams_file: Optional[Union[str, Any]] = None, weights_only: Optional[bool] = None,
                             **kwargs: Any) -> Any:
        """Build the datamodule from the hyperparameters saved in a checkpoint (``kwargs`` override them) and
        restore its ``state_dict``."""
        from fulmen.core.saving import build_from_checkpoint

        return build_from_checkpoint(cls, checkpoint_path, map_location, hparams_file, None, weights_only, kwargs)

    def state_dict(self) -> dict[str, Any]:
        """State to save in checkpoints (under the class name)."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    def on_exception(self, exception: BaseException) -> None:
        """Called when a run ends with an exception."""

    @classmethod
    def from_datasets(
        cls,
        train_dataset: Optional[Union[Dataset, Iterable[Dataset]]] = None,
        val_dataset: Optional[Union[Dataset, Iterable[Dataset]]] = None,
        test_dataset: Optional[Union[Dataset, Iterable[Dataset]]] = None,
        predict_dataset: Optional[Union[Dataset, Iterable[Dataset]]] = None,
        batch_size: int = 1,
        num_workers: int = 0,
        **datamodule_kwargs: Any,
    ) -> "LightningDataModule":
        """A datamodule whose dataloaders wrap the given datasets (shuffled for training)."""

        def loader(ds: Any, shuffle: bool) -> DataLoader:
            shuffle = shuffle and not isinstance(ds, IterableDataset)
            return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers)

        def loaders(ds: Any, shuffle: bool) -> Any:
            if isinstance(ds, Mapping):
                return {k: loader(v, shuffle) for k, v in ds.items()}
            if isinstance(ds, (list, tuple)):
                return [loader(v, shuffle) for v in ds]
            return loader(ds, shuffle)

        dm = cls(**datamodule_kwargs)
        if train_dataset is not None:
            dm.train_dataloader = lambda: loaders(train_dataset, True)  # type: ignore[method-assign]
        if val_dataset is not None:
            dm.val_dataloader = lambda: loaders(val_dataset, False)  # type: ignore[method-assign]
        if test_dataset is not None:
            dm.test_dataloader = lambda: loaders(test_dataset, False)  # type: ignore[method-assign]
        if predict_dataset is not None:
            dm.predict_dataloader = lambda: loaders(predict_dataset, False)  # type: ignore[method-assign]
        return dm
