"""The logo the command line prints (``fulmen.cli_lightning_logo()``, as Lightning's)."""

from __future__ import annotations

LIGHTNING_LOGO = """
       ____
      /   /
     /   /__
    /__    /   fulmen
      /  /     the Lightning API on a small, exact loop
     / /
    //
"""


def cli_lightning_logo() -> None:
    """Print the logo."""
    print(LIGHTNING_LOGO)
