"""Named alternatives to the spec's conventions: the semantic profiles (issue 16).

Where real libraries made different documented choices, the spec keeps one canonical choice (the
first value below) and offers the others by name, so a library is checked against the convention it
documents: ``transformer-conformance --semantics fully_masked_row=uniform``. The reference reads the
active choice where the convention applies; nothing else changes. Reports record the profile, and
the matrix and the scorecard are given under the canonical one.

fully_masked_row: what attention gives a query row that sees no key (every logit -inf). It is also
the softmax of a row of only -inf, which is where the reference applies it.
    zeros    weight 0 everywhere, context 0 (canonical: ONNX, flash-attention, torch's math backend)
    uniform  weight 1/S on every key, context the mean of V: a finite fill (jax.nn.
             dot_product_attention, flax, HuggingFace's finfo.min masks)
    nan      NaN weights and context: a plain softmax of -inf (ONNX Runtime's contrib ops with an
             all -inf bias, a naive kernel)
The log-sum-exp of such a row stays -inf under every profile, and a row with an attention sink
still sees the sink (its weights are 0 under every profile).

length_penalty: the lp(Y) a beam's log-probability is divided by, |Y| counting EOS.
    gnmt     ((5 + |Y|) / 6) ** alpha (canonical: Wu et al. 2016, eq. 14)
    length   |Y| ** alpha (HuggingFace generate's length_penalty, BeamHypotheses.add)

beam_eos: what a candidate ending in EOS does to the beam at the step it is kept.
    takes_a_beam  the beam_width best candidates are kept, finished ones included (canonical)
    frees_a_beam  among the 2 beam_width best candidates, one ending in EOS within the first
                  beam_width is finished, and the live beams are the beam_width best that do not
                  end in EOS (HuggingFace generate's beam search)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

# convention -> its values, the canonical one first
CONVENTIONS: dict[str, tuple[str, ...]] = {
    "fully_masked_row": ("zeros", "uniform", "nan"),
    "length_penalty": ("gnmt", "length"),
    "beam_eos": ("takes_a_beam", "frees_a_beam"),
}
CANONICAL: dict[str, str] = {name: values[0] for name, values in CONVENTIONS.items()}

_ACTIVE: ContextVar[Mapping[str, str]] = ContextVar("semantics", default=CANONICAL)


def check(choices: Mapping[str, str]) -> dict[str, str]:
    """The choices, validated: a known convention and one of its values (ValueError otherwise)."""
    for name, value in choices.items():
        if name not in CONVENTIONS:
            raise ValueError(
                f"unknown semantic convention {name!r}; expected one of {sorted(CONVENTIONS)}"
            )
        if value not in CONVENTIONS[name]:
            raise ValueError(f"{name} must be one of {list(CONVENTIONS[name])}; got {value!r}")
    return dict(choices)


def parse(items: list[str]) -> dict[str, str]:
    """``["fully_masked_row=uniform", ...]`` as choices (ValueError for a malformed or unknown
    one)."""
    choices = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--semantics takes NAME=VALUE; got {item!r}")
        choices[name.strip()] = value.strip()
    return check(choices)


def active() -> dict[str, str]:
    """Every convention's value in force now."""
    return {**CANONICAL, **_ACTIVE.get()}


def convention(name: str) -> str:
    """The value of one convention in force now."""
    return active()[name]


def differs() -> dict[str, str]:
    """The conventions in force now that are not canonical (empty under the canonical profile)."""
    return {n: v for n, v in active().items() if v != CANONICAL[n]}


def set_profile(choices: Mapping[str, str]) -> None:
    """Make the choices the process's profile (the pytest plugin, once per process)."""
    _ACTIVE.set({**CANONICAL, **check(choices)})


@contextmanager
def semantics(**choices: str) -> Iterator[None]:
    """Evaluate under other conventions: ``with semantics(fully_masked_row="uniform"): ...``."""
    token = _ACTIVE.set({**active(), **check(choices)})
    try:
        yield
    finally:
        _ACTIVE.reset(token)
