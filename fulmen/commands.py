"""The ``fulmen`` console command: ``fulmen <subcommand> ...``."""

from __future__ import annotations

import sys
from typing import Optional, Sequence

_SUBCOMMANDS = {"plot": "draw the metrics of runs into a PNG"}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        lines = [f"  {name:<8} {text}" for name, text in _SUBCOMMANDS.items()]
        print("usage: fulmen <subcommand> [options]\n\nsubcommands:\n" + "\n".join(lines))
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name == "plot":
        from fulmen.plot import main as plot_main

        return plot_main(rest)
    print(f"fulmen: unknown subcommand {name!r}; choose one of {sorted(_SUBCOMMANDS)} (fulmen --help)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
