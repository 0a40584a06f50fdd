"""Checkpoints: the file I/O (``io``), the dictionary layout (``format``), exact resume (``resume``) and the
choice of file behind ``ckpt_path`` (``select``)."""
