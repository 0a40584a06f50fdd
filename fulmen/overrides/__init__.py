"""What fulmen puts in place of torch's own pieces: the distributed samplers (``distributed.py``)."""
