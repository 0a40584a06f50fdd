"""LightningCLI: a command line and YAML configuration for any LightningModule and LightningDataModule, built on
jsonargparse from the classes' signatures (the ``cli`` extra: ``pip install 'fulmen[cli]'``).

``python main.py fit --config config.yaml --trainer.max_epochs=3`` parses the Trainer's, the model's and the data
module's arguments (and ``--optimizer``/``--lr_scheduler``), seeds, builds them all, saves the config next to the
logs and calls ``trainer.fit``. The ``fulmen`` console command is this CLI with any model and data module:
``fulmen fit --model mypkg.Model --data mypkg.Data``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from functools import partial, update_wrapper
from types import MethodType
from typing import Any, Callable, Optional, Union

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

try:
    import yaml
    from jsonargparse import ActionConfigFile, ArgumentParser, Namespace
    from jsonargparse.typing import class_from_function
except ImportError as _err:  # pragma: no cover - the message is the point
    raise ModuleNotFoundError(
        "fulmen.cli needs jsonargparse with its signatures extra: pip install 'fulmen[cli]'") from _err
from typing_extensions import override

import fulmen
from fulmen.callbacks.callback import Callback
from fulmen.core.datamodule import LightningDataModule
from fulmen.core.module import LightningModule
from fulmen.core.saving import instantiate_module
from fulmen.trainer.trainer import Trainer
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.hparams import given_hyperparameters
from fulmen.utilities.rank_zero import rank_zero_warn
from fulmen.utilities.seed import seed_everything

__all__ = ["ArgsType", "LRSchedulerCallable", "LightningArgumentParser", "LightningCLI", "OptimizerCallable",
           "ReduceLROnPlateau", "SaveConfigCallback", "instantiate_class", "instantiate_module"]

# What LightningCLI(args=...) takes: a list of command-line arguments, a dict or a parsed Namespace.
ArgsType = Optional[Union[list[str], dict[str, Any], Namespace]]
LRSchedulerTypeTuple = (LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
LRSchedulerTypeUnion = Union[LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau]
LRSchedulerType = Union[type[LRScheduler], type[torch.optim.lr_scheduler.ReduceLROnPlateau]]
# Annotate a module's argument with these to take an optimizer or scheduler from the config without building it:
# ``def __init__(self, optimizer: OptimizerCallable = torch.optim.Adam)``, then ``optimizer(self.parameters())`` in
# configure_optimizers; ``--model.optimizer=SGD --model.optimizer.lr=0.1`` picks another.
OptimizerCallable = Callable[[Iterable], Optimizer]
LRSchedulerCallable = Callable[[Optimizer], Union[LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau]]

# The arguments being parsed, so that an error can point at the config file and line that caused it.
_parsing: ContextVar[Optional[list[str]]] = ContextVar("fulmen_cli_parsing", default=None)


class ReduceLROnPlateau(torch.optim.lr_scheduler.ReduceLROnPlateau):
    """torch's ReduceLROnPlateau with the metric it watches as an argument, so that a config can name it:
    ``--lr_scheduler=ReduceLROnPlateau --lr_scheduler.monitor=val_loss``."""

    def __init__(self, optimizer: Optimizer, monitor: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(optimizer, *args, **kwargs)
        self.monitor = monitor


# ---------------------------------------------------------------------------------------------- the parser
class LightningArgumentParser(ArgumentParser):
    """jsonargparse's ArgumentParser with the fulmen classes: ``add_lightning_class_args`` for the Trainer, modules,
    data modules and callbacks, ``add_optimizer_args`` and ``add_lr_scheduler_args``. Its errors name the config file
    and line of the key at fault when they can."""

    def __init__(self, *args: Any, description: str = "fulmen Trainer command line tool", env_prefix: str = "PL",
                 default_env: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, description=description, env_prefix=env_prefix, default_env=default_env, **kwargs)
        self.callback_keys: list[str] = []
        # The optimizer and scheduler groups added, with the key they are linked to ("AUTOMATIC": the CLI builds
        # configure_optimizers from them).
        self._optimizers: dict[str, tuple[Union[type, tuple[type, ...]], str]] = {}
        self._lr_schedulers: dict[str, tuple[Union[type, tuple[type, ...]], str]] = {}

    def add_lightning_class_args(self, lightning_class: Union[Callable[..., Any], type], nested_key: str,
                                 subclass_mode: bool = False, required: bool = True) -> list[str]:
        """Add the ``__init__`` arguments of a Trainer, LightningModule, LightningDataModule or Callback class (or
        of a function returning one) under ``nested_key``; with ``subclass_mode`` any subclass, chosen by
        ``class_path``. Returns the keys added."""
        if callable(lightning_class) and not isinstance(lightning_class, type):
            lightning_class = class_from_function(lightning_class)
        if not (isinstance(lightning_class, type)
                and issubclass(lightning_class, (Trainer, LightningModule, LightningDataModule, Callback))):
            raise MisconfigurationException(
                f"add_lightning_class_args({lightning_class!r}, {nested_key!r}): pass a subclass of Trainer, "
                "LightningModule, LightningDataModule or Callback, or a function that returns one")
        if issubclass(lightning_class, Callback):
            self.callback_keys.append(nested_key)
        if subclass_mode:
            return self.add_subclass_arguments(lightning_class, nested_key, fail_untyped=False, required=required)
        return self.add_class_arguments(lightning_class, nested_key, fail_untyped=False,
                                        instantiate=not issubclass(lightning_class, Trainer), sub_configs=True)

    def add_optimizer_args(self, optimizer_class: Union[type[Optimizer], tuple[type[Optimizer], ...]] = (Optimizer,),
                           nested_key: str = "optimizer", link_to: str = "AUTOMATIC") -> None:
        """Add an optimizer's arguments (all but ``params``) under ``nested_key``; a tuple of classes allows any
        subclass of them. ``link_to`` a module argument passes the optimizer's config there instead of letting the
        CLI write ``configure_optimizers``."""
        self._add_group(optimizer_class, Optimizer, nested_key, "params")
        self._optimizers[nested_key] = (optimizer_class, link_to)

    def add_lr_scheduler_args(self, lr_scheduler_class: Union[LRSchedulerType, tuple[LRSchedulerType, ...]] = (
            LRSchedulerTypeTuple), nested_key: str = "lr_scheduler", link_to: str = "AUTOMATIC") -> None:
        """Add a learning-rate scheduler's arguments (all but ``optimizer``) under ``nested_key``, as
        ``add_optimizer_args`` does."""
        self._add_group(lr_scheduler_class, LRSchedulerTypeTuple, nested_key, "optimizer")
        self._lr_schedulers[nested_key] = (lr_scheduler_class, link_to)

    def _add_group(self, classes: Any, base: Any, nested_key: str, skip: str) -> None:
        listed = classes if isinstance(classes, tuple) else (classes,)
        wrong = [c for c in listed if not (isinstance(c, type) and issubclass(c, base))]
        if wrong:
            raise MisconfigurationException(f"{nested_key}: {wrong} are not subclasses of {base}")
        kwargs: dict[str, Any] = {"instantiate": False, "fail_untyped": False, "skip": {skip}}
        if isinstance(classes, tuple):
            self.add_subclass_arguments(classes, nested_key, **kwargs)
        else:
            self.add_class_arguments(classes, nested_key, sub_configs=True, **kwargs)

    @override
    def error(self, message: str, ex: Optional[Exception] = None) -> Any:
        """Report a parsing error, naming the config file and line of the key at fault where one is found."""
        args = _parsing.get()
        if args and " line " not in message:
            message += _where(message, args)
        return super().error(message, ex)


def _config_files(args: list[str]) -> list[str]:
    """The files given with ``--config``/``-c`` (either spelling, with ``=`` or apart), in order."""
    files = []
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args):
            files.append(args[i + 1])
        elif arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
    return [f for f in files if os.path.isfile(f)]


def _key_lines(path: str) -> dict[str, int]:
    """Every dotted key of a YAML file with the (1-based) line it is on; empty if the file does not parse."""
    found: dict[str, int] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = f"{prefix}{key.value}"
                found.setdefault(name, key.start_mark.line + 1)
                walk(value, name + ".")
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, f"{prefix}{i}.")

    try:
        with open(path) as f:
            walk(yaml.compose(f, Loader=yaml.SafeLoader), "")
    except (OSError, yaml.YAMLError):
        pass
    return found


def _where(message: str, args: list[str]) -> str:
    """Where the value the message is about came from: `` (on the command line: --KEY=VALUE)`` when an argument
    given after the config files set it, else `` (in FILE, line N: KEY)`` from the config files given; nothing
    when neither is found (no place is better than a wrong one)."""
    words = set(re.findall(r"['\"]([\w.\-]+)['\"]", message))
    value = re.search(r"Given value: (.+)", message)
    given = _from_command_line(words, args, value.group(1).strip() if value else None)
    if given is not None:
        return f"\n  (on the command line: {given})"
    for path in reversed(_config_files(args)):  # the last file given wins, as in the merge
        found = []
        for key, line in _key_lines(path).items():
            parts = key.split(".")
            for word in words:
                # "fit.model.x" in the message is "model.x" in a file given to the fit subcommand; a bare name
                # ("hidden") counts when another word of the message is one of its parents ("model").
                tails = [".".join(word.split(".")[i:]) for i in range(word.count(".") + 1)]
                if key in tails or (parts[-1] == word and words & set(parts[:-1])):
                    found.append((key.count("."), -line, key, line))
        if found:
            _, _, key, line = max(found)  # the deepest key: the most precise place
            return f"\n  (in {path}, line {line}: {key})"
    return ""


def _from_command_line(words: set[str], args: list[str], value: Optional[str]) -> Optional[str]:
    """The command-line argument (``--key=value``) that set a key the message names: one given after every config
    file (so its value is the one parsed), or one whose value is the ``value`` the message shows; else None."""
    last_config = max((i for i, arg in enumerate(args) if arg in ("--config", "-c") or arg.startswith("--config=")),
                      default=-1)
    for i in range(len(args) - 1, -1, -1):
        arg = args[i]
        if not arg.startswith("--") or arg.startswith("--config"):
            continue
        name = arg[2:].split("=", 1)[0]
        parts = name.split(".")
        # "trainer.max_epochs" named whole, or the option it sets ("learning_rat" of --model.learning_rat), or a
        # longer key ending with it ("fit.trainer.max_epochs", "model.init_args.learning_rat").
        if name in words or parts[-1] in words or any(w.endswith("." + name) or w.endswith("." + parts[-1])
                                                      for w in words):
            shown = arg if "=" in arg or i + 1 >= len(args) else f"{arg} {args[i + 1]}"
            own = arg.split("=", 1)[1] if "=" in arg else (args[i + 1] if i + 1 < len(args) else None)
            if i > last_config or (value is not None and own == value):
                return shown
    return None


# ---------------------------------------------------------------------------------------------- saving the config
class SaveConfigCallback(Callback):
    """Writes the parsed config as ``config_filename`` in the Trainer's ``log_dir`` when the run is set up (once, on
    global rank 0), so that the run can be repeated with ``--config``. An existing file is an error unless
    ``overwrite``; ``multifile`` keeps the split of several input files. Subclass and override ``save_config`` to
    save it elsewhere too (with ``save_to_log_dir=False``, only there)."""

    def __init__(self, parser: LightningArgumentParser, config: Namespace, config_filename: str = "config.yaml",
                 overwrite: bool = False, multifile: bool = False, save_to_log_dir: bool = True) -> None:
        if not save_to_log_dir and type(self).save_config is SaveConfigCallback.save_config:
            raise ValueError("SaveConfigCallback(save_to_log_dir=False) saves nothing unless a subclass overrides "
                             "save_config; subclass it, or leave save_to_log_dir=True")
        self.parser, self.config, self.config_filename = parser, config, config_filename
        self.overwrite, self.multifile, self.save_to_log_dir = overwrite, multifile, save_to_log_dir
        self.already_saved = False

    @override
    def setup(self, trainer: "Trainer", pl_module: Any, stage: str) -> None:
        if self.already_saved:
            return
        if self.save_to_log_dir:
            log_dir = trainer.log_dir
            path = os.path.join(log_dir, self.config_filename)
            exists = trainer.strategy.broadcast(trainer.is_global_zero and os.path.isfile(path))
            if exists and not self.overwrite:
                raise RuntimeError(
                    f"{type(self).__name__} would overwrite {path}, the config of an earlier run. Delete it, give "
                    "the run another directory (--trainer.default_root_dir or a logger version), pass "
                    "LightningCLI(save_config_kwargs={'overwrite': True}) to replace it, or "
                    "LightningCLI(save_config_callback=None) to save no config")
            if trainer.is_global_zero:
                os.makedirs(log_dir, exist_ok=True)
                self.parser.save(self.config, path, skip_none=False, overwrite=self.overwrite,
                                 multifile=self.multifile)
        if trainer.is_global_zero:
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)

    def save_config(self, trainer: "Trainer", pl_module: Any, stage: str) -> None:
        """Override to save the config somewhere else as well (runs on global rank 0 only, so no collectives);
        ``self.parser.dump(self.config, skip_none=False)`` gives it as YAML text."""


# ---------------------------------------------------------------------------------------------- the CLI
class LightningCLI:
    """Parse a command line and config files into a Trainer, a model and a data module, and run a Trainer method.

    ``model_class``/``datamodule_class`` (classes, or functions returning an instance) fix what is built; None
    lets ``--model``/``--data`` choose any subclass by ``class_path``, as does ``subclass_mode_model``/
    ``subclass_mode_data``. ``trainer_defaults`` sets Trainer defaults (its ``callbacks`` are always added);
    ``seed_everything_default`` seeds (an int; True: ``seed_everything()``'s choice; False: none), the seed
    recorded in the saved config;
    ``parser_kwargs`` go to each parser (a subcommand's under its name); ``args`` replaces ``sys.argv[1:]`` (a list,
    or a dict/Namespace of the parsed structure); ``run=False`` builds the objects without subcommands or running.
    With ``auto_configure_optimizers``, ``--optimizer``/``--lr_scheduler`` replace the model's
    ``configure_optimizers``. With ``load_from_checkpoint_support``, ``save_hyperparameters`` stores the parsed
    config, so that ``load_from_checkpoint`` can build a module whose arguments are themselves classes.

    Override ``add_arguments_to_parser`` to add or link arguments, ``before_instantiate_classes``/
    ``after_instantiate_classes``, ``before_<subcommand>``/``after_<subcommand>``, or a method named after a
    subcommand to run it differently.
    """

    def __init__(self, model_class: Optional[Union[type[LightningModule], Callable[..., LightningModule]]] = None,
                 datamodule_class: Optional[Union[type[LightningDataModule],
                                                  Callable[..., LightningDataModule]]] = None,
                 save_config_callback: Optional[type[SaveConfigCallback]] = SaveConfigCallback,
                 save_config_kwargs: Optional[dict[str, Any]] = None,
                 trainer_class: Union[type[Trainer], Callable[..., Trainer]] = Trainer,
                 trainer_defaults: Optional[dict[str, Any]] = None,
                 seed_everything_default: Union[bool, int] = True,
                 parser_kwargs: Optional[Union[dict[str, Any], dict[str, dict[str, Any]]]] = None,
                 parser_class: type[LightningArgumentParser] = LightningArgumentParser,
                 subclass_mode_model: bool = False, subclass_mode_data: bool = False, args: ArgsType = None,
                 run: bool = True, auto_configure_optimizers: bool = True,
                 load_from_checkpoint_support: bool = True) -> None:
        self.save_config_callback = save_config_callback
        self.save_config_kwargs = save_config_kwargs or {}
        self.trainer_class = trainer_class
        self.trainer_defaults = trainer_defaults or {}
        self.seed_everything_default = seed_everything_default
        self.parser_kwargs = parser_kwargs or {}
        self.parser_class = parser_class
        self.auto_configure_optimizers = auto_configure_optimizers
        self.model_class, self.datamodule_class = model_class, datamodule_class
        # Without a class, any subclass of the base may be named by class_path.
        self._model_class = model_class or LightningModule
        self._datamodule_class = datamodule_class or LightningDataModule
        self.subclass_mode_model = model_class is None or subclass_mode_model
        self.subclass_mode_data = datamodule_class is None or subclass_mode_data
        self._load_from_checkpoint_support = load_from_checkpoint_support

        names = self.subcommands()
        main_kwargs = {k: v for k, v in self.parser_kwargs.items() if k not in names}
        subcommand_kwargs = {k: v for k, v in self.parser_kwargs.items() if k in names}
        self.setup_parser(run, main_kwargs, subcommand_kwargs)
        self.parse_arguments(self.parser, args)
        self._parse_ckpt_path()
        self.subcommand: Optional[str] = self.config["subcommand"] if run else None
        self._set_seed()
        self.before_instantiate_classes()
        self.instantiate_classes()
        self.after_instantiate_classes()
        if self.subcommand is not None:
            self._run_subcommand(self.subcommand)

    # ------------------------------------------------------------------------------------------ the parser
    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        """A parser with ``--config`` (``-c``): YAML or JSON files, several merged in order."""
        kwargs.setdefault("dump_header", [f"fulmen=={fulmen.__version__}"])
        parser = self.parser_class(**kwargs)
        parser.add_argument("-c", "--config", action=ActionConfigFile,
                            help="A YAML or JSON config file; give several to merge them, later ones winning.")
        return parser

    def setup_parser(self, add_subcommands: bool, main_kwargs: dict[str, Any],
                     subparser_kwargs: dict[str, Any]) -> None:
        """Build ``self.parser``: with subcommands (fit, validate, test, predict) or, without, the arguments alone."""
        self.parser = self.init_parser(**main_kwargs)
        if add_subcommands:
            self._subcommand_method_arguments: dict[str, list[str]] = {}
            self._add_subcommands(self.parser, **subparser_kwargs)
        else:
            self._add_arguments(self.parser)

    def add_default_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """``--seed_everything``."""
        parser.add_argument("--seed_everything", type=Union[bool, int], default=self.seed_everything_default,
                            help="An int seeds everything (workers too) before the classes are built; true takes "
                                 "PL_GLOBAL_SEED or 0, as seed_everything() does; false does not seed. The seed "
                                 "used is recorded in the saved config.")

    def add_core_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """``--trainer``, ``--model`` and ``--data``."""
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.set_defaults({f"trainer.{k}": v for k, v in self.trainer_defaults.items() if k != "callbacks"})
        parser.add_lightning_class_args(self._model_class, "model", subclass_mode=self.subclass_mode_model)
        # Without a data module class the data is optional: the model's own *_dataloader hooks may serve.
        parser.add_lightning_class_args(self._datamodule_class, "data", subclass_mode=self.subclass_mode_data,
                                        required=self.datamodule_class is not None)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Override to add arguments (``parser.add_lightning_class_args(EarlyStopping, "early_stopping")``) or link
        them (``parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")``)."""

    def _add_arguments(self, parser: LightningArgumentParser) -> None:
        self.add_default_arguments_to_parser(parser)
        self.add_core_arguments_to_parser(parser)
        self.add_arguments_to_parser(parser)
        if self.auto_configure_optimizers:
            if not parser._optimizers:
                parser.add_optimizer_args((Optimizer,))
            if not parser._lr_schedulers:
                parser.add_lr_scheduler_args(LRSchedulerTypeTuple)
        self.link_optimizers_and_lr_schedulers(parser)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """The subcommands, each with the arguments of its Trainer method that the CLI fills in itself."""
        return {"fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"},
                "validate": {"model", "dataloaders", "datamodule"},
                "test": {"model", "dataloaders", "datamodule"},
                "predict": {"model", "dataloaders", "datamodule"}}

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        self._subcommand_parsers: dict[str, LightningArgumentParser] = {}
        subcommands = parser.add_subcommands()
        trainer_class = (self.trainer_class if isinstance(self.trainer_class, type)
                         else class_from_function(self.trainer_class))
        for name, skip in self.subcommands().items():
            doc = (getattr(trainer_class, name).__doc__ or "").strip()
            description = doc.split("\n\n")[0].replace("\n", " ") or None
            sub_kwargs = dict(kwargs.get(name, {}))
            sub_kwargs.setdefault("description", description)
            sub = self.init_parser(**sub_kwargs)
            self._add_arguments(sub)
            # The method's other arguments (ckpt_path, verbose, return_predictions...) become options.
            self._subcommand_method_arguments[name] = sub.add_method_arguments(trainer_class, name, skip=set(skip))
            self._subcommand_parsers[name] = sub
            subcommands.add_subcommand(name, sub, help=description)

    @staticmethod
    def link_optimizers_and_lr_schedulers(parser: LightningArgumentParser) -> None:
        """Link each optimizer and scheduler group that names a ``link_to`` to that key."""
        for key, (classes, link_to) in {**parser._optimizers, **parser._lr_schedulers}.items():
            if link_to == "AUTOMATIC":
                continue
            if isinstance(classes, tuple):
                parser.link_arguments(key, link_to)
            else:  # one class: its group holds init args only; the target wants class_path too
                parser.link_arguments(key, link_to, compute_fn=partial(_with_class_path, classes))

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Parse ``args`` (default ``sys.argv[1:]``) into ``self.config``."""
        if args is not None and len(sys.argv) > 1:
            rank_zero_warn(f"LightningCLI(args={args!r}) parses these in place of the command line, which also has "
                           f"arguments ({sys.argv[1:]}); they are ignored")
        if isinstance(args, (dict, Namespace)):
            self.config = parser.parse_object(args)
            return
        token = _parsing.set(list(sys.argv[1:] if args is None else args))
        try:
            self.config = parser.parse_args(args)
        finally:
            _parsing.reset(token)

    def _parse_ckpt_path(self) -> None:
        """With ``--ckpt_path``, the model's saved hyperparameters become the defaults of ``--model`` (the command
        line and config still win), so a checkpoint resumes with the model it was written by."""
        from fulmen.checkpoint import io

        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        path = self.config[subcommand].get("ckpt_path")
        if not path or not os.path.isfile(str(path)):
            return
        hparams = dict(io.load(path, map_location="cpu", weights_only=True).get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        try:
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)
        except SystemExit:
            sys.stderr.write(f"The hyperparameters saved in --ckpt_path {path} do not fit the model's arguments\n")
            raise

    # ------------------------------------------------------------------------------------------ building
    def before_instantiate_classes(self) -> None:
        """Override to run code before the classes are built (``self.config`` holds the parsed config)."""

    def instantiate_classes(self) -> None:
        """Build the data module, the model and the Trainer from the config (``self.config_init``)."""
        instantiators = []
        if self._load_from_checkpoint_support:
            instantiators = [(_Instantiator(self, "model"), _returned_type(self._model_class),
                              self.subclass_mode_model),
                             (_Instantiator(self, "data"), _returned_type(self._datamodule_class),
                              self.subclass_mode_data)]
        self.config_init = self.parser.instantiate(self.config, instantiators=instantiators)
        self.datamodule = self._get(self.config_init, "data")
        self.model = self._get(self.config_init, "model")
        self._add_configure_optimizers_method_to_model(self.subcommand)
        self.trainer = self.instantiate_trainer()

    def after_instantiate_classes(self) -> None:
        """Override to run code after the classes are built."""

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The Trainer from the config, with ``kwargs`` overriding it, the callbacks of the config, of
        ``trainer_defaults`` and of ``add_lightning_class_args``, and the config-saving callback."""
        parser = self._parser(self.subcommand)
        extra = [self._get(self.config_init, key) for key in parser.callback_keys]
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        if "callbacks" not in config:
            rank_zero_warn(f"{getattr(self.trainer_class, '__qualname__', self.trainer_class)} takes no callbacks "
                           "argument, so the config's callbacks are left out")
            return self.trainer_class(**config)
        callbacks = config["callbacks"]
        callbacks = [] if callbacks is None else list(callbacks) if isinstance(callbacks, list) else [callbacks]
        callbacks += extra
        default = self.trainer_defaults.get("callbacks", [])
        callbacks += default if isinstance(default, list) else [default]
        if self.save_config_callback is not None and not config.get("fast_dev_run", False):
            callbacks.append(self.save_config_callback(parser, self.config.get(str(self.subcommand), self.config),
                                                       **self.save_config_kwargs))
        config["callbacks"] = callbacks
        return self.trainer_class(**config)

    def _parser(self, subcommand: Optional[str]) -> LightningArgumentParser:
        return self.parser if subcommand is None else self._subcommand_parsers[subcommand]

    def _get(self, config: Namespace, key: str, default: Any = None) -> Any:
        """``key`` of the config, inside the subcommand's part when there is one."""
        return config.get(str(self.subcommand), config).get(key, default)

    # ------------------------------------------------------------------------------------------ optimizers
    @staticmethod
    def configure_optimizers(lightning_module: LightningModule, optimizer: Optimizer,
                             lr_scheduler: Optional[LRSchedulerTypeUnion] = None) -> Any:
        """What the model's ``configure_optimizers`` returns when ``--optimizer`` is given: the optimizer, with the
        scheduler if any (a ReduceLROnPlateau watching its ``monitor``). Override to return something else."""
        if lr_scheduler is None:
            return optimizer
        if isinstance(lr_scheduler, ReduceLROnPlateau):
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": lr_scheduler,
                                                             "monitor": lr_scheduler.monitor}}
        return [optimizer], [lr_scheduler]

    def _add_configure_optimizers_method_to_model(self, subcommand: Optional[str]) -> None:
        """With ``--optimizer`` given (and ``--lr_scheduler`` optionally), replace the model's
        ``configure_optimizers`` by ``self.configure_optimizers`` with them built on its parameters."""
        if not self.auto_configure_optimizers:
            return
        parser = self._parser(subcommand)

        def automatic(register: dict[str, tuple[Any, str]], base: Any) -> list[str]:
            keys = []
            for key, (classes, link_to) in register.items():
                listed = classes if isinstance(classes, tuple) else (classes,)
                if link_to == "AUTOMATIC" and any(issubclass(c, base) for c in listed):
                    keys.append(key)
            return keys

        optimizers = automatic(parser._optimizers, Optimizer)
        schedulers = automatic(parser._lr_schedulers, LRSchedulerTypeTuple)
        if not optimizers:
            return
        if len(optimizers) > 1 or len(schedulers) > 1:
            raise MisconfigurationException(
                f"{type(self).__name__} builds configure_optimizers from one optimizer and one scheduler group, but "
                f"{optimizers + schedulers} are all AUTOMATIC; pass link_to= for the others and write the model's "
                "configure_optimizers yourself")
        optimizer_init = self._group_init(parser._optimizers[optimizers[0]][0], optimizers[0])
        if not optimizer_init:  # the group exists but the user gave no optimizer
            return
        scheduler_init = self._group_init(parser._lr_schedulers[schedulers[0]][0], schedulers[0]) if schedulers \
            else None
        if type(self.model).configure_optimizers is not LightningModule.configure_optimizers:
            rank_zero_warn(f"{type(self.model).__name__}.configure_optimizers is replaced by the --optimizer and "
                           f"--lr_scheduler of the config ({type(self).__name__}.configure_optimizers)")
        optimizer = instantiate_class(self.model.parameters(), optimizer_init)
        scheduler = instantiate_class(optimizer, scheduler_init) if scheduler_init else None
        fn = partial(self.configure_optimizers, optimizer=optimizer, lr_scheduler=scheduler)
        update_wrapper(fn, self.configure_optimizers)
        self.model.configure_optimizers = MethodType(fn, self.model)

    def _group_init(self, classes: Any, key: str) -> Any:
        init = self._get(self.config_init, key)
        if not isinstance(classes, tuple):  # one class: the group holds its init args only
            init = _with_class_path(classes, init)
        return init

    # ------------------------------------------------------------------------------------------ running
    def _run_subcommand(self, subcommand: str) -> None:
        before = getattr(self, f"before_{subcommand}", None)
        if callable(before):
            before()
        fn = getattr(self, subcommand, getattr(self.trainer, subcommand))
        kwargs = {k: v for k, v in self.config_init[subcommand].items()
                  if k in self._subcommand_method_arguments[subcommand]}
        kwargs["model"] = self.model
        if self.datamodule is not None:
            kwargs["datamodule"] = self.datamodule
        fn(**kwargs)
        after = getattr(self, f"after_{subcommand}", None)
        if callable(after):
            after()

    def _set_seed(self) -> None:
        seed = self._get(self.config, "seed_everything")
        if seed is False:
            return
        seed = seed_everything(None if seed is True else seed, workers=True)
        # The seed used goes into the saved config, so the run can be repeated.
        (self.config[self.subcommand] if self.subcommand else self.config)["seed_everything"] = seed

    def _dumped(self) -> dict[str, Any]:
        """The parsed config as plain data (the subcommand's part), once."""
        if not hasattr(self, "config_dump"):
            dump = yaml.safe_load(self.parser.dump(self.config, skip_link_targets=False, skip_none=False,
                                                   format="yaml"))
            self.config_dump = dump[self.config.subcommand] if "subcommand" in self.config else dump
        return self.config_dump


# ---------------------------------------------------------------------------------------------- helpers
def _with_class_path(class_type: type, init_args: Any = None) -> dict[str, Any]:
    if isinstance(init_args, Namespace):
        init_args = init_args.as_dict()
    return {"class_path": f"{class_type.__module__}.{class_type.__name__}", "init_args": init_args or {}}


def _returned_type(value: Any) -> type:
    """The class a model or data module argument builds: itself, or a function's return annotation."""
    if callable(value) and not isinstance(value, type):
        import inspect

        return inspect.signature(value).return_annotation
    return value


def instantiate_class(args: Any, init: dict[str, Any]) -> Any:
    """Build ``init["class_path"]`` with the positional ``args`` (one value or a tuple) and ``init["init_args"]``:
    what the CLI does with ``--optimizer`` (args: the parameters) and ``--lr_scheduler`` (args: the optimizer)."""
    import importlib

    module_name, _, class_name = init["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(*(args if isinstance(args, tuple) else (args,)), **init.get("init_args", {}))


class _Instantiator:
    """Builds the model or data module inside ``given_hyperparameters``, so that ``save_hyperparameters`` saves the
    parsed config (class paths and all) rather than the objects built from it."""

    def __init__(self, cli: LightningCLI, key: str) -> None:
        self.cli, self.key = cli, key

    def __call__(self, class_type: type, *args: Any, applied_instantiation_links: Optional[dict] = None,
                 **kwargs: Any) -> Any:
        hparams = dict(self.cli._dumped().get(self.key) or {})
        if "class_path" in hparams:  # stored flat, with the class aside, whichever way it was given
            hparams = {"_class_path": hparams["class_path"], **(hparams.get("init_args") or {}),
                       **(hparams.get("dict_kwargs") or {})}
        for target, value in (applied_instantiation_links or {}).items():
            prefix = f"{self.key}."
            if target.startswith(prefix):
                _set_nested(hparams, target[len(prefix):].removeprefix("init_args."), value)
        with given_hyperparameters(hparams, "fulmen.cli.instantiate_module"):
            return class_type(*args, **kwargs)


def _set_nested(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        data = data.setdefault(key, {})
    data[last] = value
