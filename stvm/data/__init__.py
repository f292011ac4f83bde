"""Data: raw dataset readers, preparation, prepared datasets, PNG I/O and the synthetic generator."""
