"""Shared fixtures: the CLI's path, and a tiny MNIST-style data directory of IDX files."""

import os
import pathlib
import struct

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cli():
    """The `dropkit` executable of the build under test (ctest sets DROPKIT_CLI)."""
    path = os.environ.get("DROPKIT_CLI", str(ROOT / "build" / "dropkit"))
    if not os.path.exists(path):
        pytest.skip(f"no dropkit executable at {path}")
    return path


def write_idx(path, array):
    """An IDX file of unsigned bytes (tests/support/idx_files.h: magic, big-endian dims)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    pathlib.Path(path).write_bytes(header + array.tobytes())


def synthetic(count, side, classes, seed):
    """tests/support/idx_files.h's synthetic_dataset: class c lights up its own band of rows."""
    images = np.empty((count, side * side), dtype=np.uint8)
    labels = (np.arange(count) % classes).astype(np.uint8)
    state = (seed * 2654435761 + 7) & 0xFFFFFFFF
    band = (np.arange(side * side) // side) * classes // side
    for i in range(count):
        noise = np.empty(side * side, dtype=np.int64)
        for p in range(side * side):
            state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
            noise[p] = state >> 26
        base = np.where(band == labels[i], 160, 40)
        images[i] = (base + noise).astype(np.uint8)
    return images.reshape(count, side, side), labels


def write_mnist_dir(directory, train, test):
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, (images, labels) in (("train", train), ("t10k", test)):
        write_idx(directory / f"{prefix}-images-idx3-ubyte", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte", labels)


@pytest.fixture
def tiny_data(tmp_path):
    """A learnable 8x8, 4-class data set: 200 training and 60 test images, plain IDX files."""
    d = tmp_path / "data"
    write_mnist_dir(d, synthetic(200, 8, 4, 1), synthetic(60, 8, 4, 2))
    return d
