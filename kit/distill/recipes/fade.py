"""Fade out, during training, the channels a later ``kit-prune`` will cut.

.. code-block:: yaml

    network_g: {type: SPANStudent, num_feat: 48, deploy: true}   # the unpruned network, as plain convolutions
    train:
      ema_decay: 0               # kit-prune reads the weights themselves: an EMA would lag the fade
      recipes:
        fade:
          width: 28              # channels per group that stay (kit-prune --width)
          end_iter: 1000         # the cut channels' weights reach exactly 0 here, and stay there

``kit-prune`` cuts a trained network in one step and refits what remains; everything the cut channels carried is
lost at once. Here the network trains a while longer at full width while the weights coupled to the channels to
be cut (producers' filters and biases, consumers' input slices: torch-pruning's coupled groups) are scaled down
after every optimiser step, linearly from their value to exactly 0 at ``end_iter``, so that the rest learns to do
without them while the teacher's losses hold the function (gradual pruning: Zhu & Gupta, "To prune, or not to
prune", 2017; soft filter pruning: He et al., IJCAI 2018). ``kit-prune`` on the result then removes channels that
carry nothing, and its refit starts from a network already adapted to their absence.

Why a scale after the step and not an L2 penalty in the loss (growing regularisation): Adam moves each weight by
about the learning rate a step whatever the penalty's size, so a penalty cannot bring weights of SPAN's size
(rms 0.3) to 0 at the small learning rates a trained network tolerates (measured: ``python -m bench prune``).

Which channels: the ones ``kit-prune`` would cut (the lowest activation energy in each coupled group), measured on
the first training batch (rank 0's under DDP) and stored in the resume state. Needs a family ``kit-prune`` knows, in its
plain-convolution form.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch

from kit.distill.recipes.base import RECIPE_REGISTRY, Recipe, Step
from kit.registry import OptionsKeyError

__all__ = ["ChannelFade", "fade_slices"]


def fade_slices(net: torch.nn.Module, width: int, inputs: torch.Tensor) -> dict[str, list[int]]:
    """For each channel group of ``net`` wider than ``width`` (by root conv), the root channels a prune to
    ``width`` cuts: the lowest activation energy, as ``kit-prune`` chooses.

    Args:
        net: The network as plain convolutions (left unchanged).
        width: Channels each group keeps; a group this wide or narrower is kept whole.
        inputs: LR crops ``(N, C, h, w)`` the activation energy is measured on.

    Raises:
        OptionsKeyError: no group is wider than ``width``.
    """
    from kit.prune.graph import channel_groups

    probe = copy.deepcopy(net).float().eval()
    return _cut_channels(probe, channel_groups(probe, inputs[:1]), width, inputs)


def _cut_channels(probe: torch.nn.Module, groups: list, width: int, inputs: torch.Tensor) -> dict[str, list[int]]:
    """:func:`fade_slices` on the groups already traced on ``probe`` (a float copy of the network, eval mode)."""
    from kit.prune.importance import activation_energy, group_scores, keep_channels

    energy = activation_energy(probe, inputs)
    cut = {}
    for group in groups:
        if group.size > width:
            kept = set(keep_channels(group_scores(group, probe, "energy", energy), width))
            cut[group.root] = [c for c in range(group.size) if c not in kept]
    if not cut:
        widest = max(group.size for group in groups)
        raise OptionsKeyError(f"train:recipes:fade:width {width} cuts nothing (widest group: {widest}); set it lower")
    return cut


def _from_rank_0(cut: dict[str, list[int]]) -> dict[str, list[int]]:
    """Rank 0's choice on every rank under DDP (each rank's first batch differs; the weights must not)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        holder = [cut]
        torch.distributed.broadcast_object_list(holder, src=0)
        return holder[0]
    return cut


@RECIPE_REGISTRY.register("fade")
@dataclass(eq=False)
class ChannelFade(Recipe):
    """Scales the weights coupled to the channels a ``--width`` prune cuts linearly down to 0 at ``end_iter``."""

    order = 90

    width: int
    end_iter: int
    cut: dict[str, list[int]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.width, self.end_iter = int(self.width), int(self.end_iter)
        if self.width < 1:
            raise OptionsKeyError(f"train:recipes:fade:width must be >= 1, got {self.width}")
        if self.end_iter < 1:
            raise OptionsKeyError(f"train:recipes:fade:end_iter must be >= 1, got {self.end_iter}")
        self._slices: list[tuple[torch.Tensor, int, torch.Tensor]] = []

    def bind(self, host: Any) -> None:
        """Checks that ``network_g`` is a family kit-prune knows, in its plain-convolution form."""
        from kit.prune.families import get_family

        entry = host.opt["network_g"]
        try:
            family = get_family(str(entry.get("type")))
        except ValueError as err:
            raise OptionsKeyError(f"train:recipes:fade: {err}") from err
        if family.deploy_argument and not entry.get("deploy"):
            raise OptionsKeyError(
                "train:recipes:fade needs network_g in its plain-convolution form: set network_g:deploy: true "
                f"({family.name}'s re-parameterisable branches cannot be faded channel by channel)"
            )
        if float(host.opt["train"].get("ema_decay", 0) or 0) > 0:
            raise OptionsKeyError(
                "train:recipes:fade needs train:ema_decay: 0 (kit-prune reads the weights themselves; an EMA lags the "
                "fade and keeps the cut channels alive)"
            )
        self.net = host.get_bare_model(host.net_g)

    def _bind_slices(self, groups: list) -> None:
        params = dict(self.net.named_parameters())
        self._slices = []
        for group in groups:
            removed = set(self.cut.get(group.root, []))
            for item in group.items:
                idx = [i for i, r in zip(item.idxs, item.root_idxs) if r in removed]
                if not idx:
                    continue
                weight = params[f"{item.module}.weight"]
                index = torch.tensor(idx, device=weight.device)
                self._slices.append((weight, 0 if item.kind == "out" else 1, index))
                bias = params.get(f"{item.module}.bias")
                if item.kind == "out" and bias is not None:
                    self._slices.append((bias, 0, index))

    def remaining(self, current_iter: int) -> float:
        """What is left of the cut channels' weights after ``current_iter`` (1 before the run, 0 from ``end_iter``)."""
        return max(1.0 - max(current_iter, 0) / self.end_iter, 0.0)

    def terms(self, step: Step) -> dict[str, torch.Tensor]:
        """No loss term; at the first step, the channels to cut (on this batch) and the weights coupled to them."""
        if not self._slices:
            from kit.prune.graph import channel_groups

            with torch.no_grad():
                lq = step.lq.detach().float()
                probe = copy.deepcopy(self.net).float().eval()
                groups = channel_groups(probe, lq[:1])  # traced once: for the choice and for the weights
                if not self.cut:
                    self.cut = _from_rank_0(_cut_channels(probe, groups, self.width, lq))
                self._bind_slices(groups)
        return {}

    @torch.no_grad()
    def after_step(self, current_iter: int) -> None:
        before = self.remaining(current_iter - 1)
        factor = self.remaining(current_iter) / before if before > 0 else 0.0
        for param, dim, index in self._slices:
            param.index_copy_(dim, index, param.index_select(dim, index) * factor)

    def cut_norm(self) -> float:
        """The L2 norm of every weight coupled to a cut channel (0 once faded)."""
        return float(sum(p.detach().index_select(d, i).double().square().sum() for p, d, i in self._slices) ** 0.5)

    def state_dict(self) -> dict:
        return {"fade_cut": {k: list(v) for k, v in self.cut.items()}}

    def load_state_dict(self, state: dict) -> None:
        if "fade_cut" in state:
            self.cut = {k: [int(c) for c in v] for k, v in state["fade_cut"].items()}
