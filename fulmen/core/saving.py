"""Saving and loading what a module is built from: ``load_from_checkpoint`` and the hyperparameter files.

``load_from_checkpoint`` rebuilds a module (or datamodule) from the hyperparameters a checkpoint holds and loads its
state. The hyperparameter files are those the loggers write (``hparams.yaml``), and the ``tags.csv`` of older
releases. Reading never builds objects or runs code: YAML is read with ``safe_load``, and a checkpoint may only name
classes that are already imported.
"""

from __future__ import annotations

import ast
import csv
import json
import os
import re
import sys
from argparse import Namespace
from collections.abc import Mapping
from enum import Enum
from typing import Any, Optional, Union

import torch

from fulmen.utilities.rank_zero import rank_zero_warn

# Keys under which checkpoints of Lightning's first releases kept the hyperparameters.
CHECKPOINT_PAST_HPARAMS_KEYS = ("hparams", "module_arguments")


class _class_only(classmethod):
    """A classmethod that refuses to run on an instance: ``model.load_from_checkpoint(p)`` would build a new
    module and leave ``model`` unchanged, which is never what the caller meant."""

    def __get__(self, instance: Any, owner: Optional[type] = None) -> Any:
        if instance is not None:
            name = self.__func__.__name__

            def refuse(*args: Any, **kwargs: Any) -> Any:
                raise TypeError(f"{name} is a class method that returns a new object: call "
                                f"{type(instance).__name__}.{name}(path), not on an instance")

            return refuse
        return super().__get__(instance, owner)


def build_from_checkpoint(cls: type, path: Any, map_location: Any, hparams_file: Any, strict: Optional[bool],
                          weights_only: Optional[bool], overrides_: dict[str, Any]) -> Any:
    """``cls.load_from_checkpoint``: a new module (or datamodule) from the saved hyperparameters, with its state."""
    import inspect

    from fulmen.checkpoint import io

    if not isinstance(cls, type):
        raise TypeError("load_from_checkpoint is a class method: call MyModule.load_from_checkpoint(path), not "
                        "model.load_from_checkpoint(path)")
    checkpoint = io.load(path, map_location=map_location, weights_only=weights_only)
    name_key, params_key = cls.CHECKPOINT_HYPER_PARAMS_NAME, cls.CHECKPOINT_HYPER_PARAMS_KEY  # type: ignore[attr-defined]
    if hparams_file is not None:
        hparams = _read_hparams_file(hparams_file)
    else:
        hparams = dict(checkpoint.get(params_key) or {})
    args_name = checkpoint.get(name_key)
    params = inspect.signature(cls.__init__).parameters
    takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in params.values())
    if args_name and args_name != "kwargs" and args_name in params:
        init_kwargs = {args_name: hparams}  # save_hyperparameters(config) of one argument named ``config``
    else:
        init_kwargs = hparams if takes_kwargs else {k: v for k, v in hparams.items() if k in params}
    instantiator = _instantiator(cls, hparams.pop("_instantiator", None), hparams, trusted=weights_only is False)
    if instantiator is not None:  # saved by the CLI: the parsed config builds the module again
        obj = instantiator(cls, {**hparams, **overrides_})
    else:
        init_kwargs.pop("_instantiator", None)
        init_kwargs.update(overrides_)
        obj = cls(**init_kwargs)
    source = source_name(path)
    if isinstance(obj, torch.nn.Module):
        obj.on_load_checkpoint(checkpoint)
        load_module_state(obj, checkpoint, obj.strict_loading if strict is None else strict, source)
        if isinstance(map_location, (str, torch.device)):
            obj.to(map_location)
    else:
        state = checkpoint.get(cls.__qualname__)
        if state is not None:
            obj.load_state_dict(state)
        obj.on_load_checkpoint(checkpoint)
    return obj


# The functions a checkpoint may name to rebuild its module: the CLI's, under fulmen's and Lightning's names.
_INSTANTIATORS = ("fulmen.cli.instantiate_module", "lightning.pytorch.cli.instantiate_module",
                  "pytorch_lightning.cli.instantiate_module")


def _instantiator(cls: type, name: Any, hparams: dict[str, Any], trusted: bool = False) -> Any:
    """The CLI's ``instantiate_module`` when the hyperparameters ask for it. A checkpoint is data, so it may only
    name that function, and, at any depth of its hyperparameters, only classes that are already imported: loading
    one never imports or runs other code. ``trusted`` (``weights_only=False``) lets it import the classes it names."""
    if name is None:
        return None
    if name not in _INSTANTIATORS:
        raise ValueError(f"The checkpoint asks for {name!r} to build the module; fulmen only runs "
                         f"{_INSTANTIATORS[0]!r}. If you trust the file, delete hyper_parameters['_instantiator'] "
                         "and pass the arguments to load_from_checkpoint yourself")
    class_path = hparams.get("_class_path")
    if class_path is not None:
        found = _imported_class(class_path)
        if not trusted and not (isinstance(found, type) and issubclass(found, cls)):
            raise ValueError(f"The checkpoint's hyperparameters name the class {class_path!r}, which is not an imported "
                             f"subclass of {cls.__name__}; import its module before loading (a checkpoint never "
                             "imports code itself), or, if you trust the file, pass weights_only=False")
    if not trusted:
        for where, path in _class_paths(hparams, "hyper_parameters"):
            if not isinstance(_imported_class(path), type):
                raise ValueError(
                    f"The checkpoint's {where} names the class {path!r}, which is not imported; a checkpoint may "
                    f"only name classes that are already imported, as building from it must not import code. Import "
                    f"{str(path).rpartition('.')[0] or path!r} before loading, or, if you trust the file, pass "
                    "weights_only=False to load_from_checkpoint"
                )
    return instantiate_module


def instantiate_module(class_type: type, config: dict[str, Any]) -> Any:
    """Build ``class_type`` (or the subclass in ``config["_class_path"]``) from the flat config that the CLI saved
    as its hyperparameters; ``load_from_checkpoint`` calls this for checkpoints written under the CLI (its public
    name is ``fulmen.cli.instantiate_module``, as in Lightning)."""
    try:
        from jsonargparse import ArgumentParser
    except ImportError as err:
        raise ModuleNotFoundError("This checkpoint was written under LightningCLI; rebuilding its module needs "
                                  "jsonargparse: pip install 'fulmen[cli]'") from err

    parser = ArgumentParser(exit_on_error=False)
    if "_class_path" in config:
        parser.add_subclass_arguments(class_type, "module", fail_untyped=False)
        config = {"class_path": config["_class_path"],
                  "dict_kwargs": {k: v for k, v in config.items() if k != "_class_path"}}
    else:
        parser.add_class_arguments(class_type, "module", fail_untyped=False)
    return parser.instantiate(parser.parse_object({"module": config})).module


def _imported_class(path: Any) -> Any:
    """The object ``path`` ("package.module.Name") names among the modules already imported, or None."""
    module_name, _, class_name = str(path).rpartition(".")
    return getattr(sys.modules.get(module_name), class_name, None)


def _class_paths(value: Any, where: str) -> list[tuple[str, Any]]:
    """Every ``class_path`` entry (with where it is) in nested dicts and lists, at any depth."""
    found: list[tuple[str, Any]] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key == "class_path" and "." in str(item):  # a bare class name is looked up among imported classes
                found.append((f"{where}[{key!r}]", item))
            else:
                found.extend(_class_paths(item, f"{where}[{key!r}]"))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found.extend(_class_paths(item, f"{where}[{i}]"))
    return found


def _read_hparams_file(path: Any) -> dict[str, Any]:
    """``load_from_checkpoint(hparams_file=...)``: the hyperparameters of a YAML file, which must exist."""
    if not os.fspath(path).lower().endswith((".yaml", ".yml")):
        raise ValueError(f"load_from_checkpoint(hparams_file={os.fspath(path)!r}) must be a .yaml or .yml file (as "
                         "the loggers write hparams.yaml)")
    try:
        import yaml
    except ImportError as err:
        raise ImportError("load_from_checkpoint(hparams_file=...) reads YAML with PyYAML: pip install pyyaml") from err
    with open(os.fspath(path)) as f:
        try:
            data = yaml.safe_load(f)  # safe_load: a YAML file cannot build objects or run code
        except yaml.constructor.ConstructorError as err:
            raise ValueError(f"hparams_file {os.fspath(path)!r} holds a Python object tag ({err.problem}, "
                             f"{err.problem_mark}); fulmen reads plain YAML values only, as building objects from "
                             "a file could run code. Write the values themselves") from None
    if not isinstance(data, dict):
        raise ValueError(f"hparams_file {os.fspath(path)!r} must hold a mapping of hyperparameters")
    return data


def to_yaml(data: dict[str, Any]) -> str:
    """Plain data as YAML: one ``key: value`` line each, as Lightning's ``hparams.yaml`` reads (``hidden: 64``); keys
    and strings plain where YAML reads them back as the same string, quoted otherwise; lists and dicts in JSON flow
    style (which YAML reads as is); anything else by its repr as a quoted string."""

    def value(v: Any) -> str:
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            if v != v:
                return ".nan"  # YAML's own spellings, which read back as floats
            text = {float("inf"): ".inf", float("-inf"): "-.inf"}.get(v, repr(v))
            if isinstance(v, float) and "e" in text and "." not in text:
                mantissa, exponent = text.split("e")
                text = f"{mantissa}.0e{exponent}"  # YAML 1.1 (PyYAML) reads 1e-05 as a string, 1.0e-05 as a float
            return text
        if isinstance(v, str):
            return _plain_or_quoted(v)
        try:
            return json.dumps(v)
        except (TypeError, ValueError):
            return json.dumps(repr(v))

    return "".join(f"{_plain_or_quoted(str(k))}: {value(v)}\n" for k, v in data.items())


# A string YAML reads back as itself when written bare: a name-like word that is not one of YAML's words for true,
# false or null (and so not a number either, as it starts with a letter or an underscore).
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
_YAML_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "y", "n", "null", "nan", "inf"})


def _plain_or_quoted(text: str) -> str:
    if _PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text)


def _as_dict(hparams: Union[Mapping[str, Any], Namespace]) -> dict[str, Any]:
    if isinstance(hparams, Namespace):
        return dict(vars(hparams))
    if not isinstance(hparams, Mapping):
        raise TypeError(f"hparams must be a dict or an argparse.Namespace, got {type(hparams).__name__}")
    return dict(hparams)


def _existing_folder(path: Union[str, os.PathLike[str]]) -> str:
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise RuntimeError(f"Missing folder: {folder}; create it before writing {path}")
    return path


def save_hparams_to_yaml(config_yaml: Union[str, os.PathLike[str]], hparams: Union[Mapping[str, Any], Namespace],
                         use_omegaconf: bool = True) -> None:
    """Write ``hparams`` (a dict or Namespace) to ``config_yaml`` as the loggers' ``hparams.yaml`` does: enums
    as their names, values YAML cannot hold as their ``repr`` strings. ``use_omegaconf`` is accepted for
    Lightning's signature; an OmegaConf container is written as the plain data it holds."""
    path = _existing_folder(config_yaml)
    data = {key: value.name if isinstance(value, Enum) else _plain_container(value)
            for key, value in _as_dict(hparams).items()}
    with open(path, "w", encoding="utf-8") as f:
        f.write(to_yaml(data))


def _plain_container(value: Any) -> Any:
    """An OmegaConf DictConfig/ListConfig as plain dicts and lists (without importing omegaconf)."""
    if type(value).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(value, resolve=True)
    return value


def load_hparams_from_yaml(config_yaml: Union[str, os.PathLike[str]], use_omegaconf: bool = True) -> dict[str, Any]:
    """The hyperparameters in ``config_yaml``; an empty dict, with a warning, when the file does not exist.

    The file is read with ``yaml.safe_load`` (plain values only: a file never builds objects). With
    ``use_omegaconf`` and omegaconf installed the result is a ``DictConfig``, as in Lightning.
    """
    path = os.fspath(config_yaml)
    if not os.path.exists(path):
        rank_zero_warn(f"Missing hyperparameters file: {path}.", category=RuntimeWarning)
        return {}
    data = _read_hparams_file(path) if path.lower().endswith((".yaml", ".yml")) else _read_yaml(path)
    if use_omegaconf:
        try:
            from omegaconf import OmegaConf
        except ImportError:
            return data
        return OmegaConf.create(data)  # type: ignore[return-value]
    return data


def _read_yaml(path: str) -> dict[str, Any]:
    import yaml

    with open(path) as f:
        data = yaml.safe_load(f)
    return data if isinstance(data, dict) else {}


def save_hparams_to_tags_csv(tags_csv: Union[str, os.PathLike[str]],
                             hparams: Union[Mapping[str, Any], Namespace]) -> None:
    """Write ``hparams`` as the ``key,value`` rows of a ``tags.csv`` (the format of Lightning's first releases)."""
    path = _existing_folder(tags_csv)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["key", "value"])
        for key, value in _as_dict(hparams).items():
            writer.writerow([key, value])


def load_hparams_from_tags_csv(tags_csv: Union[str, os.PathLike[str]]) -> dict[str, Any]:
    """The hyperparameters of a ``tags.csv``, each value read back by ``convert``; an empty dict, with a
    warning, when the file does not exist."""
    path = os.fspath(tags_csv)
    if not os.path.exists(path):
        rank_zero_warn(f"Missing hyperparameters file: {path}.", category=RuntimeWarning)
        return {}
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return {row[0]: convert(row[1]) for row in rows[1:] if len(row) >= 2}


def convert(val: str) -> Union[int, float, bool, str, None, list[Any], dict[Any, Any], tuple[Any, ...]]:
    """A string from a ``tags.csv`` as the Python literal it spells (``"0.1"`` -> 0.1), or the string itself.
    ``ast.literal_eval`` reads literals only: nothing is called."""
    try:
        return ast.literal_eval(val)
    except (ValueError, SyntaxError):
        return val


def update_hparams(hparams: dict[str, Any], updates: Mapping[str, Any]) -> None:
    """Merge ``updates`` into ``hparams`` in place, nested dicts key by key."""
    for key, value in updates.items():
        if key in hparams and isinstance(hparams[key], dict) and isinstance(value, Mapping):
            update_hparams(hparams[key], value)
        else:
            hparams[key] = value


def load_module_state(module: torch.nn.Module, checkpoint: dict[str, Any], strict: bool, source: str,
                      strategy: Any = None) -> None:
    """Load ``state_dict`` into ``module`` (through ``strategy``, which may hold it sharded); on a mismatch, list the
    missing and unexpected keys."""
    if "state_dict" not in checkpoint:
        raise KeyError(f"{source} has no 'state_dict' entry (keys: {sorted(checkpoint)}); it is not a model "
                       "checkpoint written by fulmen or Lightning")
    # Saved without the "_orig_mod." of compiled submodules (as fulmen saves) or with it (as Lightning does): either
    # loads into a module that is compiled the same way or not.
    state = keys_for(module, checkpoint["state_dict"])
    if strategy is None:
        missing, unexpected = module.load_state_dict(state, strict=False)
    else:
        missing, unexpected = strategy.load_module_state_dict(module, state, strict=False)
    if strict and (missing or unexpected):
        raise RuntimeError(
            f"The weights in {source} do not fit {type(module).__name__}: missing keys {list(missing)}, unexpected "
            f"keys {list(unexpected)}. Check that the model is built the same way, or pass strict=False to load "
            "the keys that match"
        )
    if missing or unexpected:
        rank_zero_warn(f"Loaded {source} with strict=False: missing keys {list(missing)}, unexpected keys "
                       f"{list(unexpected)}")


def source_name(path: Any) -> str:
    return repr(os.fspath(path))


def plain_keys(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with the ``_orig_mod.`` of compiled submodules taken out of the keys."""
    if not any("_orig_mod." in k for k in state):
        return state
    return {_plain(k): v for k, v in state.items()}


def keys_for(module: torch.nn.Module, state: dict[str, Any]) -> dict[str, Any]:
    """``state`` (plain keys or not) under the keys ``module`` has, where they differ by ``_orig_mod.`` alone."""
    actual = {_plain(k): k for k in module.state_dict()}
    return {actual.get(_plain(k), _plain(k)): v for k, v in state.items()}


def _plain(key: str) -> str:
    return key.replace("._orig_mod.", ".").removeprefix("_orig_mod.")
