"""Held-back validation when fine-tuning on your own stacks (``Trainer(..., holdout_every=N)``, ``data: folder``).

1 in N of the folder's stacks (sorted by path; :func:`holdout_indices`) are kept out of training. Their
re-rendering loss (self-supervised, no depth needed) is measured on the starting weights and after each
validation; ``best.pt`` holds whichever weights gave the lowest (the start weights until a step beats them),
and :func:`holdout_summary` says in words how the run went.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from model.lens import LensProfile

if TYPE_CHECKING:
    from model.train_config import TrainConfig
    from model.trainer import Trainer

__all__ = ["holdout_indices", "StackSubset", "held_back_stacks", "holdout_batches", "validate_holdout_start",
           "update_holdout_best", "holdout_summary"]

#: the trainer's logger: these messages are the training run's, under the name users filter by
log = logging.getLogger("model.trainer")

Record = tuple[int, float]  # (step, held-back re-rendering loss)


def holdout_indices(n: int, every: int) -> list[int]:
    """Which of ``n`` stacks (sorted by path) are held back for validation: 1 in ``every``, at least one
    when ``n >= 2``, spread evenly; none when ``every`` is 0 or ``n < 2``."""
    if every <= 0 or n < 2:
        return []
    k = max(1, n // every)
    return sorted({min(n - 1, int((j + 0.5) * n / k)) for j in range(k)})


class StackSubset(torch.utils.data.Dataset):
    """Items ``index`` of a stack dataset (:class:`model.data.FolderStacks`), for :class:`model.data.RandomBatches`."""

    def __init__(self, ds: Any, index: list[int]) -> None:
        self.ds, self.index = ds, list(index)
        self.stack_sizes = [ds.stack_sizes[i] for i in self.index]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.ds[self.index[i]]

    def set_epoch(self, epoch: int) -> None:
        self.ds.set_epoch(epoch)


def held_back_stacks(data_dir: str | Path, every: int) -> tuple[list[int], list[str], int]:
    """The stacks of ``data_dir`` held back for validation: ``(indices in`` :func:`model.formats.find_stacks`
    ``order, their folders, how many stacks the folder holds)``."""
    from model.formats import find_stacks

    folders = find_stacks(data_dir)  # type: ignore[arg-type]
    held = holdout_indices(len(folders), every)
    return held, [str(folders[i]) for i in held], len(folders)


def holdout_batches(cfg: TrainConfig, lens: LensProfile, focus_m: Sequence[float],
                    held: list[int]) -> list[dict[str, torch.Tensor]]:
    """Fixed ``cfg.crop`` crops (no augmentation) of the held-back stacks ``held`` of ``cfg.data_dir``,
    ``max(cfg.val_stacks, len(held))`` of them, one stack per batch; empty when none is held back."""
    from model.data import FolderStacks, collate_stacks

    if not held:
        return []
    ds = FolderStacks(cfg.data_dir, lens, (cfg.crop, cfg.crop),  # type: ignore[arg-type]
                      frames=list(focus_m) if cfg.focus_mode == "fixed" else "all", augment=False, seed=987654321)
    out = []
    for j in range(max(cfg.val_stacks, len(held))):
        ds.set_epoch(j // len(held))  # another crop of each stack in each round
        out.append(collate_stacks([ds[held[j % len(held)]]]))
    return out


def validate_holdout_start(tr: Trainer) -> None:
    """Validate ``tr``'s starting weights on the held-back stacks; they are ``best.pt`` until a step beats them.

    With fewer than two stacks none is held back: a warning, and ``tr.holdout_every`` becomes 0.
    """
    held = tr._held_back()
    if not held:
        log.warning("%s holds fewer than two stacks: none is held back for validation, so nothing tells whether "
                    "fine-tuning helps and best.pt is not written; record more stacks", tr.cfg.data_dir)
        tr.holdout_every = 0
        return
    loss = tr.validate()["recon"]
    tr.holdout_start = tr.holdout_best = tr.holdout_last = (tr.step, loss)
    what = "at the start" if tr.step == 0 else f"at step {tr.step} (resumed; the run's start was not measured)"
    log.info("held back for validation: %d of %d stacks (%s); their re-rendering loss %s: %.5f",
             len(held), tr.holdout_n_stacks, ", ".join(Path(h).name for h in tr.holdout_stacks),
             what, loss)
    tr.save("best.pt", slim=True)


def update_holdout_best(tr: Trainer, metrics: dict[str, float]) -> None:
    """After a validation of ``tr``: keep ``best.pt`` by the held-back re-rendering loss and say where it stands."""
    loss = metrics["recon"]
    tr.holdout_last = (tr.step, loss)
    if tr.holdout_start is None or tr.holdout_best is None:
        return
    if loss < tr.holdout_best[1]:
        tr.holdout_best = (tr.step, loss)
        tr.save("best.pt", slim=True)
    log.info("step %d: held-back re-rendering loss %.5f (start %.5f; best %.5f at step %d)", tr.step, loss,
             tr.holdout_start[1], tr.holdout_best[1], tr.holdout_best[0])


def holdout_summary(start: Record | None, best: Record | None, last: Record | None, stacks: Sequence[str],
                   out_dir: Path) -> list[str]:
    """What the held-back validation says about the run, one line each (empty without one): the start,
    best and latest re-rendering loss, and a ``warning:`` line when the result is worse than the start.

    ``start``/``best``/``last`` are ``(step, loss)``; ``stacks`` the held-back folders; ``out_dir`` holds ``best.pt``.
    """
    if start is None or best is None:
        return []
    (s0, l0), (sb, lb) = start, best
    sl, ll = last or best
    n = len(stacks)
    out = [f"held-back validation ({n} stack{'s' if n != 1 else ''}, re-rendering loss, lower is better): "
           f"start {l0:.5f} (step {s0}), latest {ll:.5f} (step {sl}), best {lb:.5f} (step {sb})"]
    best_pt = out_dir / "best.pt"
    if sb == s0:
        if sl != s0:
            out.append(f"warning: fine-tuning did not improve on where it started: the held-back re-rendering loss went "
                       f"{l0:.5f} -> {ll:.5f} (step {sl}); {best_pt} holds the start weights (step {s0}): use it, not last.pt")
    elif ll > l0:
        out.append(f"warning: the result is worse than where it started (held-back re-rendering loss {l0:.5f} -> {ll:.5f} "
                   f"at step {sl}); {best_pt} holds step {sb} ({lb:.5f}), better than the start: use it, not last.pt")
    else:
        out.append(f"{best_pt}: step {sb}, held-back re-rendering loss {lb:.5f}, better than the start ({l0:.5f})")
    return out
