"""Per-batch seeds and shuffles: pure functions of (base seed, epoch, batch).

The daemon's negatives are a pure function of (table content, request,
seed), so the seed of each request decides which negatives a run gets. One
base seed per run is enough when every batch and every epoch asks with its
own seed derived from it:

    derive_seed(seed, epoch, batch) = splitmix64(splitmix64(splitmix64(seed) ^ epoch) ^ batch) >> 1

where splitmix64(x) is SplitMix64's output for state x (add the golden
gamma 0x9E3779B97F4A7C15, then the finaliser with 30/27/31 shifts and the
multipliers 0xBF58476D1CE4E5B9, 0x94D049BB133111EB; all mod 2^64), and the
final shift keeps 63 bits (a JSON and frame-safe seed). It is the same in
every process and on every machine, so DataLoader workers agree on the
seed of batch b without talking to each other, and a logged (seed, epoch)
replays a pass exactly.

The shuffle of epoch e is the permutation that sorts
splitmix64(key + j * 0x9E3779B97F4A7C15), j = 0..n-1 (the first n outputs
of a SplitMix64 generator started at key), with
key = splitmix64(splitmix64(splitmix64(seed) ^ epoch) ^ SHUFFLE), stable
on ties: also a pure function of (seed, epoch, n).
"""
import random

import numpy as np

GOLDEN = 0x9E3779B97F4A7C15
MASK = 2 ** 64 - 1
SHUFFLE = MASK  # the batch index that names the shuffle's key (never a real batch)


def splitmix64(x):
    """SplitMix64's output for state @x (an int; arithmetic mod 2^64)."""
    z = (x + GOLDEN) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def _key(seed, epoch, batch):
    for name, v in (("seed", seed), ("epoch", epoch), ("batch", batch)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= int(v) <= MASK:
            raise ValueError("%s must be an integer in [0, 2^64), not %r" % (name, v))
    return splitmix64(splitmix64(splitmix64(int(seed)) ^ int(epoch)) ^ int(batch))


def derive_seed(seed, epoch=0, batch=0):
    """The seed of batch @batch in epoch @epoch of a run with base seed
    @seed: a 63-bit int, a fixed function (module docstring)."""
    return _key(seed, epoch, batch) >> 1


def random_seed():
    """A fresh 63-bit base seed from the OS's randomness (for seed=None:
    log it to replay the run)."""
    return random.SystemRandom().getrandbits(63)


def permutation(seed, epoch, n):
    """The shuffle of epoch @epoch: an int64 permutation of range(@n), a
    fixed function of (seed, epoch, n) (module docstring)."""
    key = np.uint64(_key(seed, epoch, SHUFFLE))
    with np.errstate(over="ignore"):
        z = key + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return np.argsort(z, kind="stable").astype(np.int64)
