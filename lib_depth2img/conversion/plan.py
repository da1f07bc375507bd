"""A conversion as a list of output tensors, each made from named input tensors only when it is written.

Nothing is read ahead: the writer asks each ``Planned`` tensor for its data in turn, so a
conversion holds one tensor (or one fused attention weight) in memory at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from lib_depth2img.errors import Depth2ImgError


@dataclass(frozen=True)
class Planned:
    name: str
    shape: tuple[int, ...]
    sources: tuple[str, ...]
    make: Callable[[list[torch.Tensor]], torch.Tensor]
    keep_dtype: bool = False  # written in its own dtype even when the model is written in float16


def renamed(name: str, source: str, shape: Sequence[int]) -> Planned:
    return Planned(name, tuple(shape), (source,), lambda tensors: tensors[0])


def reshaped(name: str, source: str, shape: Sequence[int]) -> Planned:
    shape = tuple(shape)
    return Planned(name, shape, (source,), lambda tensors: tensors[0].reshape(shape))


def chunk_of(name: str, source: str, shape: Sequence[int], part: int, parts: int) -> Planned:
    """Part ``part`` of ``parts`` equal slices along the first dimension (a fused q/k/v split)."""
    return Planned(name, tuple(shape), (source,), lambda tensors: tensors[0].chunk(parts, dim=0)[part])


def concatenated(name: str, sources: Sequence[str], shape: Sequence[int]) -> Planned:
    return Planned(name, tuple(shape), tuple(sources), lambda tensors: torch.cat(tensors, dim=0))


def constant(name: str, value: torch.Tensor, keep_dtype: bool = False) -> Planned:
    return Planned(name, tuple(value.shape), (), lambda tensors: value, keep_dtype)


def with_prefix(prefix: str, plan: list[Planned], source_prefix: str = "") -> list[Planned]:
    return [replace(p, name=prefix + p.name, sources=tuple(source_prefix + s for s in p.sources)) for p in plan]


def translate(key: str, table: Sequence[tuple[str, str, Sequence[tuple[str, str]]]]) -> str | None:
    """Rename by the first matching (prefix, new prefix, inner renames); ``None`` if no prefix matches."""
    for prefix, new_prefix, inner in table:
        if key.startswith(prefix):
            rest = key[len(prefix):]
            for old, new in inner:
                if rest.startswith(old):
                    rest = new + rest[len(old):]
                    break
            return new_prefix + rest
    return None


def reversed_table(table: Sequence[tuple[str, str, Sequence[tuple[str, str]]]]):
    return [(new, old, [(b, a) for a, b in inner]) for old, new, inner in table]


def plan_renames(index: dict, table, part: str) -> list[Planned]:
    """Every tensor of ``index`` under its name in the other layout; a tensor with no counterpart is an error."""
    plan, unknown = [], []
    for key, info in index.items():
        new = translate(key, table)
        if new is None:
            unknown.append(key)
        else:
            plan.append(renamed(new, key, info.shape))
    if unknown:
        raise Depth2ImgError(f"The {part} has tensors this converter does not know, so it is not the SD2 depth "
                             f"architecture: {', '.join(sorted(unknown)[:5])}{' …' if len(unknown) > 5 else ''}.")
    return plan


def apply_plan(plan: list[Planned], state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The whole conversion in memory, for state dicts small enough to hold twice."""
    return {p.name: p.make([state[s] for s in p.sources]) for p in plan}
