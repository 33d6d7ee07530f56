"""HDF5 I/O, datasets and sparse-measurement encoders."""
