"""The loops: fit (training with validation), evaluation, prediction, and the optimization step."""
