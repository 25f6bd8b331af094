"""Where the CPU goes, from py-spy's collapsed stacks (`schedule_keeping --profile PATH`).

    .venv/bin/python -m bench.profile_summary PATH [--top 40] [--match TEXT]

Prints the functions with the largest inclusive share of the samples (a function counted once
per sample however deep it recurs) and the largest self share (the innermost frame).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def read_stacks(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--match", default="", help="only stacks through a frame with TEXT")
    args = parser.parse_args()
    stacks = [
        (frames, n)
        for frames, n in read_stacks(args.path)
        if not args.match or any(args.match in f for f in frames)
    ]
    total = sum(n for _, n in stacks) or 1
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, n in stacks:
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    print(f"{total} samples")
    for title, counter in (("inclusive", inclusive), ("self", own)):
        print(f"\n{title}:")
        for frame, n in counter.most_common(args.top):
            print(f"{n / total:6.1%}  {frame}")


if __name__ == "__main__":
    main()
