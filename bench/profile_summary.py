"""Summarize a py-spy ``--format raw`` profile: where the samples went.

Prints the functions with the most samples on top of the stack (self) and the
most samples anywhere in the stack (inclusive), as shares of all samples.

Run: ``python -m bench.profile_summary PROFILE.txt [--top 30] [--match TEXT]``.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def read(path: Path) -> list[tuple[list[str], int]]:
    """Stacks (outermost frame first) and their sample counts."""
    stacks = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        text, _, count = line.rpartition(" ")
        if text and count.isdigit():
            stacks.append((text.split(";"), int(count)))
    return stacks


def _short(frame: str) -> str:
    """``function (path/to/module.py:line)`` without the line or the venv prefix."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rpartition(":")[0]
    for marker in ("site-packages/", "python3.11/", "/work/main/", "/tmp/dvsnap/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})"


def summarize(
    stacks: list[tuple[list[str], int]], top: int, match: str | None = None
) -> str:
    """Self and inclusive tables of the ``top`` functions."""
    total = sum(count for _, count in stacks)
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in stacks:
        if match and not any(match in frame for frame in frames):
            continue
        names = [_short(f) for f in frames]
        own[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    lines = [f"{total} samples"]
    for title, counter in (("self", own), ("inclusive", inclusive)):
        lines.append(f"\n-- {title} --")
        for name, count in counter.most_common(top):
            lines.append(f"{100.0 * count / max(1, total):6.1f}%  {name}")
    return "\n".join(lines)


def by_thread(stacks: list[tuple[list[str], int]], top: int) -> str:
    """Per thread (profiles taken with ``--threads``): samples and top self frames."""
    threads: dict[str, list[tuple[list[str], int]]] = {}
    for frames, count in stacks:
        threads.setdefault(frames[0], []).append((frames[1:] or frames, count))
    ordered = sorted(threads.items(), key=lambda item: -sum(c for _, c in item[1]))
    parts = []
    for name, own in ordered[:top]:
        total = sum(c for _, c in own)
        counter: Counter[str] = Counter()
        for frames, count in own:
            counter[_short(frames[-1])] += count
        top_frames = ", ".join(
            f"{100.0 * c / total:.0f}% {n}" for n, c in counter.most_common(4)
        )
        parts.append(f"{total:6d}  {name}: {top_frames}")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--match", help="only stacks with a frame containing this")
    parser.add_argument("--threads", action="store_true", help="per thread")
    args = parser.parse_args(argv)
    stacks = read(args.profile)
    if args.threads:
        print(by_thread(stacks, args.top))
    else:
        print(summarize(stacks, args.top, args.match))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
