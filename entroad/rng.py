"""Seeded initialisation that never touches torch's global random generator.

``torch.manual_seed`` (even inside ``fork_rng``) is process-wide: two threads building
random-init models at once would interleave their draws and get different weights. Inside
:func:`seeded_init` every random op of the current thread draws from a private
``torch.Generator`` instead; seeded like the global one, it yields the same weights as
``torch.manual_seed(seed)`` did, so existing random-init checkpoints still match.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch.overrides import TorchFunctionMode

# Ops that draw random numbers and take a ``generator`` argument: torch functions, in-place
# Tensor methods and the nn.init initialisers. The mode sees only the outermost call (ops
# inside an nn.init function bypass it), so the initialisers must be listed themselves.
_RANDOM_OPS = frozenset({
    "rand", "randn", "randint", "randperm", "normal", "bernoulli", "multinomial", "poisson",
    "uniform_", "normal_", "bernoulli_", "random_", "exponential_", "geometric_", "log_normal_", "cauchy_",
    "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_", "trunc_normal_",
    "orthogonal_", "sparse_",
})


class _PrivateGenerator(TorchFunctionMode):
    """Hands ``generator`` to every random op that was not given one (torch function modes
    are thread-local, so other threads keep using the global generator)."""

    def __init__(self, generator: torch.Generator) -> None:
        super().__init__()
        self.generator = generator

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if getattr(func, "__name__", None) in _RANDOM_OPS and kwargs.get("generator") is None:
            kwargs["generator"] = self.generator
        return func(*args, **kwargs)


@contextlib.contextmanager
def seeded_init(seed: int) -> Iterator[torch.Generator]:
    """Random ops on CPU inside this block draw from a private generator seeded with ``seed``."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed)
    with _PrivateGenerator(generator):
        yield generator
