"""An independent NumPy reference of dropkit's random numbers (src/dropkit/rng/philox.h,
rng/streams.h): Philox4x32-10 and the element layout, written from their definitions."""

import math

import numpy as np

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK = 0xFFFFFFFF
DROPOUT_STREAM_BASE = 0x00010000
SAMPLE_DOMAIN = 0x80000000


def philox(c, k):
    """Philox4x32-10 on arrays of counters: c = (c0, c1, c2, c3), k = (k0, k1), uint64 arrays
    holding 32-bit words."""
    c0, c1, c2, c3 = (np.asarray(w, dtype=np.uint64) for w in c)
    k0, k1 = (np.asarray(w, dtype=np.uint64) for w in k)
    for _ in range(10):
        p0 = np.uint64(M0) * c0
        p1 = np.uint64(M1) * c2
        hi0, lo0 = p0 >> np.uint64(32), p0 & np.uint64(MASK)
        hi1, lo1 = p1 >> np.uint64(32), p1 & np.uint64(MASK)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + np.uint64(W0)) & np.uint64(MASK)
        k1 = (k1 + np.uint64(W1)) & np.uint64(MASK)
    return c0, c1, c2, c3


def bits_at(seed, stream, step, index):
    """The 32-bit word of elements `index` (an array) of stream (seed, stream, step)."""
    i = np.asarray(index, dtype=np.uint64)
    g, r = i // np.uint64(64), i % np.uint64(64)
    block = g * np.uint64(16) + r % np.uint64(16)
    zeros = np.zeros_like(block)
    words = philox((block & np.uint64(MASK), zeros + np.uint64(stream),
                    zeros + np.uint64(step & MASK), zeros + np.uint64(step >> 32)),
                   (np.uint64(seed & MASK), np.uint64(seed >> 32)))
    w = (r // np.uint64(16)).astype(np.int64)
    return np.choose(w, words)


def keep_mask(n, p, seed, layer=0, step=0, mode="train", mask_bits=32):
    """keep_i = field_i >= round(p 2^b) (rng::KeepThreshold), for elements 0 .. n-1."""
    stream = DROPOUT_STREAM_BASE + layer
    if mode == "sample":
        stream |= SAMPLE_DOMAIN
    threshold = math.floor(math.ldexp(p, mask_bits) + 0.5)
    i = np.arange(n, dtype=np.uint64)
    if mask_bits == 32:
        field = bits_at(seed, stream, step, i)
    else:
        per = 32 // mask_bits
        word = bits_at(seed, stream, step, i // np.uint64(per))
        shift = (np.uint64(mask_bits) * (i % np.uint64(per)))
        field = (word >> shift) & np.uint64((1 << mask_bits) - 1)
    return field >= np.uint64(threshold) if threshold < (1 << mask_bits) else np.zeros(n, bool)
