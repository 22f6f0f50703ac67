"""Pure scaling helpers shared by every family: channel rounding, depth rounding, compound scaling.

These are the small, separately testable functions that keras.applications keeps as closures
inside its builder. They follow the tensorflow/tpu reference exactly, so that the B0-B7 parameter
counts equal keras.applications'.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "make_divisible",
    "round_filters",
    "round_repeats",
    "distribute_repeats",
    "round_resolution",
    "correct_pad",
    "CompoundScale",
    "compound_scale",
    "PAPER_COEFFICIENTS",
]

#: The EfficientNet paper's grid-search result at phi = 1: (alpha, beta, gamma) = depth, width, resolution.
PAPER_COEFFICIENTS: tuple[float, float, float] = (1.2, 1.1, 1.15)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never going down below
    ``round_limit * value`` (one ``divisor`` more when it would).

    ``round_limit=0.9`` is the tensorflow/tpu EfficientNet ``round_filters`` rule (and timm's
    ``make_divisible``); ``round_limit=0`` is plain rounding, the rule of google/automl EfficientNetV2
    and keras.applications EfficientNetV2 (timm ``round_chs_fn(round_limit=0.)``): at width 1.2,
    16 channels scale to 19.2 and round to 16, which the 10% rule would lift to 24.
    """
    if divisor < 1:
        raise ValueError(f"divisor must be a positive integer, got {divisor!r}")
    if not 0.0 <= round_limit < 1.0:
        raise ValueError(f"round_limit must be in [0, 1), got {round_limit!r}")
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return int(new_value)


def round_filters(filters: int, width_coefficient: float, divisor: int = 8, round_limit: float = 0.9) -> int:
    """Scale a channel count by the width coefficient and round it with :func:`make_divisible`."""
    return make_divisible(filters * width_coefficient, divisor, round_limit=round_limit)


def round_repeats(repeats: int, depth_coefficient: float) -> int:
    """Scale a stage's block count by the depth coefficient, rounding up (the reference rule)."""
    return int(math.ceil(depth_coefficient * repeats))


def distribute_repeats(repeats: Sequence[int], depth_coefficient: float, costs: Sequence[float] | None = None,
                       target: float | None = None) -> tuple[int, ...]:
    """Block counts per stage, each its scaled count ``depth x repeats`` rounded down or up (at
    least 1), chosen together so that their cost-weighted total is closest to ``target``
    (default: ``depth x`` the original weighted total).

    Rounding each stage up (:func:`round_repeats`, the reference's rule for B0-B7) adds up to a
    block per stage: at ``depth < 1`` no stage ever shrinks below B0's and FLOPs stay far above
    ``alpha^phi``; at ``depth > 1`` every stage rounds up. Here every stage stays within one
    block of its own scaled count, and of the 2^stages ways to round, the one whose total is
    closest to the target wins (ties: the one closest to the unweighted scaled total, then the
    earlier stages rounded up). ``costs`` weigh each stage's blocks (e.g. FLOPs per block);
    without them every block weighs the same and the total block count is rounded.
    """
    if not repeats or any(r < 1 for r in repeats):
        raise ValueError(f"repeats must be positive block counts, got {list(repeats)}")
    if not math.isfinite(depth_coefficient) or depth_coefficient <= 0:
        raise ValueError(f"depth_coefficient must be a positive number, got {depth_coefficient!r}")
    weights = [1.0] * len(repeats) if costs is None else [float(c) for c in costs]
    if len(weights) != len(repeats) or any(not w > 0 for w in weights):
        raise ValueError(f"costs must be one positive number per stage, got {costs!r}")
    scaled = [r * depth_coefficient for r in repeats]
    goal = sum(x * w for x, w in zip(scaled, weights)) if target is None else float(target)
    choices = [sorted({max(1, math.floor(x)), max(1, math.ceil(x))}) for x in scaled]

    def badness(counts: tuple[int, ...]) -> tuple[float, float, tuple[int, ...]]:
        return (abs(sum(n * w for n, w in zip(counts, weights)) - goal), abs(sum(counts) - sum(scaled)),
                tuple(-n for n in counts))

    return min(itertools.product(*choices), key=badness)


def round_resolution(resolution: float, multiple: int = 8, minimum: int = 32) -> int:
    """Round an input resolution to the nearest multiple of ``multiple`` (at least ``minimum``).

    A multiple of 8 keeps every stride-2 stage's feature map an integer size down to stride 8,
    which is what the published resolutions (224, 240, 256, ...) mostly respect.
    """
    return max(minimum, int(round(resolution / multiple)) * multiple)


def correct_pad(input_size: tuple[int | None, int | None], kernel_size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Zero padding that makes a stride-2 'valid' convolution behave like TF 'SAME' padding.

    Same rule as ``keras.applications.imagenet_utils.correct_pad``: unknown sizes are treated as even.
    """
    adjust = tuple(1 if size is None else 1 - size % 2 for size in input_size)
    half = kernel_size // 2
    return ((half - adjust[0], half), (half - adjust[1], half))


@dataclass(frozen=True)
class CompoundScale:
    """Width, depth and resolution multipliers produced by compound scaling (paper Eq. 3)."""

    width: float
    depth: float
    resolution: int
    dropout: float


def compound_scale(
    phi: float,
    coefficients: tuple[float, float, float] = PAPER_COEFFICIENTS,
    base_resolution: int = 224,
    dropout_by_phi: tuple[float, ...] = (0.2, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5),
) -> CompoundScale:
    """EfficientNet paper Equation 3: depth alpha^phi, width beta^phi, resolution gamma^phi.

    ``phi`` may be any real number (fractional and negative included). The resolution is
    ``base_resolution * gamma^phi`` rounded to a multiple of 8; the dropout rate is linearly
    interpolated in the official B0-B7 table at ``phi`` (clamped to its ends).
    """
    coefficients = validate_coefficients(coefficients)
    if isinstance(phi, bool) or not isinstance(phi, (int, float)) or not math.isfinite(phi):
        raise ValueError(f"phi must be a finite real number, got {phi!r}")
    alpha, beta, gamma = coefficients
    position = min(max(float(phi), 0.0), len(dropout_by_phi) - 1.0)
    low = int(math.floor(position))
    high = min(low + 1, len(dropout_by_phi) - 1)
    dropout = dropout_by_phi[low] + (dropout_by_phi[high] - dropout_by_phi[low]) * (position - low)
    return CompoundScale(
        width=beta**phi,
        depth=alpha**phi,
        resolution=round_resolution(base_resolution * gamma**phi),
        dropout=round(dropout, 6),
    )


def validate_coefficients(coefficients: object) -> tuple[float, float, float]:
    """Check that ``coefficients`` is three real numbers >= 1 and return them as floats."""
    try:
        values = tuple(float(c) for c in coefficients)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(
            f"coefficients must be three numbers (alpha, beta, gamma), each >= 1, got {coefficients!r}"
        ) from None
    if len(values) != 3 or not all(math.isfinite(v) and v >= 1.0 for v in values):
        raise ValueError(
            f"coefficients must be three numbers (alpha, beta, gamma), each >= 1, got {coefficients!r}"
        )
    return values  # type: ignore[return-value]
