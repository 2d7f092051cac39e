"""Data sets: MNIST from a data root, the cache or the embedded test split."""

from ._mnist import get_data_home, load_mnist

__all__ = ["get_data_home", "load_mnist"]
