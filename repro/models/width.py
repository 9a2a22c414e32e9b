"""The width multiplier shared by the CNN families."""


def scaled(channels: int, width: float) -> int:
    """Channel count under a width multiplier (never below 1)."""
    return max(1, int(round(channels * width)))
