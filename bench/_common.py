"""What the benchmarks share."""


def pct(xs: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of the samples."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]
