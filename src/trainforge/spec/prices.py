"""The default price table: what one instance-hour of each instance type costs, in US dollars.

The figures are AWS's *public on-demand list prices* for SageMaker in US East (N. Virginia, ``us-east-1``) as we
assume them on 2024-12-01: SageMaker Training's price for every type training jobs accept, and real-time inference's
for the hosting-only types (``ml.t2.*``, ``ml.m5d.*``, ``ml.c5d.*``, ``ml.inf1.*``, ``ml.c4.large``,
``ml.c5.large``). They are list prices, not a quote: no savings plans, spot or regional differences, and AWS changes
them from time to time. A server sets its own figures (and currency) with a price file, ``TRAINFORGE_PRICES_FILE``
(:mod:`trainforge.service.costs`). ``local`` and ``local_gpu`` (this machine) cost nothing.

Pure data: this module does no I/O and imports nothing of ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

DEFAULT_CURRENCY = "USD"
FREE_TYPES = frozenset({"local", "local_gpu"})
"""Instance types that stand for this machine: their price is always 0."""

PRICES_AS_OF = "2024-12-01"
"""The date the default figures are assumed current on."""


def _family(prefix: str, **sizes: float) -> dict[str, float]:
    return {f"{prefix}.{size.removeprefix('s')}": price for size, price in sizes.items()}


# Sizes that start with a digit are spelled with a leading "s" (a keyword argument cannot start with one).
_DEFAULTS: dict[str, float] = {
    **_family("ml.t2", medium=0.056, large=0.111, xlarge=0.222, s2xlarge=0.445),
    **_family("ml.t3", medium=0.05, large=0.1, xlarge=0.2, s2xlarge=0.399),
    **_family("ml.m4", xlarge=0.24, s2xlarge=0.48, s4xlarge=0.96, s10xlarge=2.4, s16xlarge=3.84),
    **_family("ml.m5", large=0.115, xlarge=0.23, s2xlarge=0.461, s4xlarge=0.922, s12xlarge=2.765, s24xlarge=5.53),
    **_family("ml.m5d", large=0.136, xlarge=0.272, s2xlarge=0.544, s4xlarge=1.089, s12xlarge=3.266, s24xlarge=6.532),
    **_family(
        "ml.m6i",
        large=0.115,
        xlarge=0.23,
        s2xlarge=0.461,
        s4xlarge=0.922,
        s8xlarge=1.843,
        s12xlarge=2.765,
        s16xlarge=3.686,
        s24xlarge=5.53,
        s32xlarge=7.373,
    ),
    **_family("ml.c4", large=0.14, xlarge=0.279, s2xlarge=0.557, s4xlarge=1.114, s8xlarge=2.227),
    **_family("ml.c5", large=0.119, xlarge=0.204, s2xlarge=0.408, s4xlarge=0.816, s9xlarge=1.836, s18xlarge=3.672),
    **_family("ml.c5d", large=0.115, xlarge=0.23, s2xlarge=0.461, s4xlarge=0.922, s9xlarge=2.074, s18xlarge=4.147),
    **_family("ml.c5n", xlarge=0.302, s2xlarge=0.605, s4xlarge=1.21, s9xlarge=2.722, s18xlarge=5.443),
    **_family(
        "ml.c6i",
        xlarge=0.204,
        s2xlarge=0.408,
        s4xlarge=0.816,
        s8xlarge=1.632,
        s12xlarge=2.448,
        s16xlarge=3.264,
        s24xlarge=4.896,
        s32xlarge=6.528,
    ),
    **_family(
        "ml.r5",
        large=0.151,
        xlarge=0.302,
        s2xlarge=0.605,
        s4xlarge=1.21,
        s8xlarge=2.419,
        s12xlarge=3.629,
        s16xlarge=4.838,
        s24xlarge=7.258,
    ),
    **_family(
        "ml.r5d",
        large=0.174,
        xlarge=0.348,
        s2xlarge=0.695,
        s4xlarge=1.39,
        s8xlarge=2.78,
        s12xlarge=4.171,
        s16xlarge=5.561,
        s24xlarge=8.342,
    ),
    **_family("ml.p2", xlarge=1.125, s8xlarge=8.64, s16xlarge=17.28),
    **_family("ml.p3", s2xlarge=3.825, s8xlarge=14.688, s16xlarge=28.152),
    **_family("ml.p3dn", s24xlarge=35.894),
    **_family("ml.p4d", s24xlarge=37.688),
    **_family("ml.p5", s48xlarge=113.068),
    **_family("ml.g4dn", xlarge=0.736, s2xlarge=0.94, s4xlarge=1.505, s8xlarge=2.72, s12xlarge=4.89, s16xlarge=5.44),
    **_family(
        "ml.g5",
        xlarge=1.408,
        s2xlarge=1.515,
        s4xlarge=2.03,
        s8xlarge=3.06,
        s12xlarge=7.09,
        s16xlarge=5.12,
        s24xlarge=10.18,
        s48xlarge=20.36,
    ),
    **_family("ml.inf1", xlarge=0.297, s2xlarge=0.471, s6xlarge=1.533, s24xlarge=6.129),
}

DEFAULT_PRICES: Mapping[str, float] = MappingProxyType(_DEFAULTS)
"""USD per instance-hour of every type in the instance catalogue (training and hosting), by ``ml.*`` name."""
