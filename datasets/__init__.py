"""Training data sets (Monodepth2 input-dict convention) and split-file helpers."""
