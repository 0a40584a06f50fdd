"""One training batch: the automatic step (``automatic.py``), the closure step (``closure.py``) and manual
optimization (``manual.py``)."""
