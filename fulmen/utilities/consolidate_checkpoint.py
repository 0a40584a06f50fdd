"""A sharded checkpoint folder (``FSDPStrategy(state_dict_type="sharded")``) as one ordinary checkpoint file.

    python -m fulmen.utilities.consolidate_checkpoint path/to/epoch=1-step=100.ckpt [--output_file out.ckpt]

The output (by default ``<folder>.consolidated``) loads on any number of processes, and without a process group:
``load_from_checkpoint``, ``Trainer.fit(ckpt_path=...)`` and ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import argparse
import os
from typing import Optional, Sequence

from fulmen.checkpoint import io


def main(argv: Optional[Sequence[str]] = None) -> str:
    """Consolidate the folder named on the command line; returns the path written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint_folder", help="the sharded checkpoint folder")
    parser.add_argument("--output_file", default=None, help="where to write (default: <folder>.consolidated)")
    args = parser.parse_args(argv)
    folder = os.fspath(args.checkpoint_folder).rstrip(os.sep)
    if not io.is_sharded(folder):
        parser.error(f"{folder!r} is not a sharded checkpoint folder (it has no {io.SHARDED_META})")
    output = args.output_file or f"{folder}.consolidated"
    io.atomic_save(io.load_sharded(folder), output)
    print(f"Wrote {output}")
    return output


if __name__ == "__main__":
    main()
