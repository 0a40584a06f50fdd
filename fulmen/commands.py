"""The ``fulmen`` console command: ``fulmen fit|validate|test|predict ...`` (the LightningCLI with any model and
data module), ``fulmen run script.py ...`` (an unchanged Lightning program on fulmen) and ``fulmen plot``."""

from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

_SUBCOMMANDS = {
    "fit": "train a model: fulmen fit --model pkg.Model [--data pkg.Data] [--config cfg.yaml]",
    "validate": "run the validation loop once",
    "test": "run the test loop",
    "predict": "run the predict loop",
    "run": "run an unchanged Lightning program on fulmen: fulmen run train.py [its arguments]",
    "plot": "draw the metrics of runs into a PNG",
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        lines = [f"  {name:<9} {text}" for name, text in _SUBCOMMANDS.items()]
        print("usage: fulmen <subcommand> [options]   (fulmen <subcommand> --help for its options)\n"
              "       fulmen --version\n\n"
              "subcommands:\n" + "\n".join(lines))
        return 0 if args else 2
    name = args[0]
    if name in ("-V", "--version"):
        from fulmen.__about__ import __version__

        print(f"fulmen {__version__} (torch {_torch_version()}, Python {sys.version.split()[0]})")
        return 0
    if name == "plot":
        from fulmen.plot import main as plot_main

        return plot_main(args[1:])
    if name in ("fit", "validate", "test", "predict"):
        return _run_cli(args)
    if name == "run":
        return _run_script(args[1:])
    print(f"fulmen: unknown subcommand {name!r}; choose one of {sorted(_SUBCOMMANDS)} (fulmen --help)",
          file=sys.stderr)
    return 2


def _torch_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")  # without importing torch: --version answers at once
    except PackageNotFoundError:
        return "not installed"


def _run_cli(args: list[str]) -> int:
    # Class paths in a config (examples.digits.model.DigitsClassifier) resolve from the current directory, as
    # `python -m` would; a console script otherwise sees only its own folder and site-packages.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        from fulmen.cli import LightningCLI
    except ModuleNotFoundError as err:
        print(f"fulmen {args[0]}: {err}", file=sys.stderr)
        return 2
    LightningCLI(args=args if args != sys.argv[1:] else None)
    return 0


def _run_script(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        print("usage: fulmen run SCRIPT [ARGS...]\n\nRuns SCRIPT with lightning.pytorch and pytorch_lightning "
              "mapped to fulmen (lightning.fabric stays as installed).")
        return 0 if args else 2
    from fulmen.utilities.aliases import run

    run(args[0], args[1:])  # (the script's own sys.exit, and its errors, end the process as they would)
    return 0


if __name__ == "__main__":
    sys.exit(main())
