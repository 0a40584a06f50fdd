#!/usr/bin/env bash
# The same DDP run, with the two processes started by torchrun instead of by fulmen. Run from the repository root:
#   bash examples/ddp/torchrun.sh [--trainer.max_epochs=5 ...]
# On two machines: give each `--nnodes 2 --node-rank 0|1 --master-addr HOST --master-port 29500` and add
# `--trainer.num_nodes=2` to the options below.
set -euo pipefail
PYTHON=${PYTHON:-python}
exec "$PYTHON" -m torch.distributed.run --standalone --nproc-per-node 2 \
    -m examples.digits.main fit --config examples/digits/config.yaml --config examples/ddp/ddp.yaml "$@"
