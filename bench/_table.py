"""The summary table the end-to-end benchmarks print: a row per measure with its value and its
target, the target with the measured value's share of it where there is a ceiling or a floor."""

from __future__ import annotations

Row = tuple[str, str, str]  # measure, value, target ("" where there is none)


def of_target(target: str, value: float, limit: float) -> str:
    """`target` and the value's share of its limit: `<= 4.0 s (0.63 of it)`."""
    return f"{target} ({value / limit:.2f} of it)"


def print_rows(rows: list[Row], value_width: int, target_heading: str) -> None:
    print()
    width = max(len(row[0]) for row in rows)
    header = f"{'measure':<{width}}  {'value':<{value_width}} {target_heading}"
    print(header)
    print("-" * len(header))
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<{value_width}} {target}")
