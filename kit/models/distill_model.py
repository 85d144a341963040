"""DistillModel: the student learns from the ground truth, the teacher's image and the teacher's features.

.. code-block:: yaml

    model_type: DistillModel
    network_g: {type: RLFNStudent, ...}       # the student: the only network trained, saved and exported
    network_t: {type: RRDBNet, ...}           # the teacher (or {type: AutoTeacher}); or several under teachers:
    path:
      pretrain_network_t: experiments/teacher_rrdb_x4/models/net_g_latest.pth
      teacher_recipe: options/teacher.yml     # trained first when the checkpoint above is missing
    train:
      pixel_opt: {type: L1Loss, loss_weight: 1.0}
      distill:                                # see kit.distill.pairs for the entries
        output: {loss: {type: L1Loss, loss_weight: 1.0}}

The teacher(s) are frozen: ``eval()`` as a whole (drop-path and dropout off), no gradient, never in the
optimizer, DDP, EMA, checkpoints or exports. Connectors are training-only modules of this model: in the
optimizer, wrapped for DDP, saved in every resume state, never in the student's weights.
Hinton et al. 2015 (arXiv 1503.02531) for output distillation; FitNets (Romero et al., ICLR 2015) and
CWD (Shu et al., ICCV 2021) for the feature pairs.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY

from kit.distill.gt_free import check_gt_free, train_provides_gt
from kit.distill.pairs.auto import AUTO_KEY, automatic_pairs, dry_input_size, merge_auto, pairs_yaml, parse_auto
from kit.distill.pairs.recorder import FeatureRecorder
from kit.distill.pairs.tokens import as_map
from kit.distill.pairs.wiring import ConnectorBank, dry_check, parse_distill
from kit.distill.recipes.base import Recipes, Step
from kit.metrics import quantize
from kit.models.compiling import compile_in_place, eager
from kit.models.sr_model import KitSRModel
from kit.registry import build_loss
from kit.teachers import LoadedTeacher, load_teachers_frozen_rng, weighted_mean_output
from kit.teachers.cache import cache_enabled


@MODEL_REGISTRY.register()
class DistillModel(KitSRModel):
    """Knowledge distillation for restoration; options in the module docstring."""

    def __init__(self, opt: dict, teachers: dict[str, LoadedTeacher] | None = None) -> None:
        """``teachers``: the options' teachers as the training run loaded them (loaded here when ``None``)."""
        self._handed_teachers = teachers
        super().__init__(opt)

    # ------------------------------------------------------------------ set-up
    def build_training_losses(self) -> None:
        """Teachers, the output and pair losses, the recipes (bound before the recorders attach), the connectors."""
        train_opt = self.opt["train"]
        logger = get_root_logger()
        self.hold_teachers()
        distill = self.resolve_auto_pairs(train_opt.get("distill"))
        self.output_spec, self.pairs = parse_distill(distill, list(self.teachers))
        self.cached_teacher_images: dict[str, torch.Tensor] | None = None
        # The training run resolved train.teacher_cache into this dataset option (kit.run).
        use_cache = bool(self.opt["datasets"].get("train", {}).get("teacher_outputs")) or cache_enabled(self.opt)
        self.cri_out = None
        if self.output_spec is not None:
            self.cri_out = build_loss(self.output_spec.loss, "train:distill:output:loss").to(self.device)
        self.cri_pairs = {
            p.name: build_loss(p.loss, f"train:distill:{p.name}:loss").to(self.device) for p in self.pairs
        }
        self.recipes = Recipes(train_opt.get("recipes"))
        if use_cache:
            upcycle = " (upcycling still runs them on its extra inputs)" if self.recipes.get("upcycle") else ""
            logger.info(f"Teacher cache: the training batches carry the teachers' images; no teacher forward{upcycle}")
        if self.cri_pix is None and self.cri_out is None and not self.pairs:
            raise ValueError("nothing trains the student: give train:pixel_opt and/or train:distill entries")
        self.gt_free = not train_provides_gt(self.opt)
        if self.gt_free:
            check_gt_free(self.cri_pix is not None, self.recipes, self.cri_out is not None)
            logger.info("No ground truth: the teacher's image is the target; validation is measured to the teacher")
        self._val_teacher: dict[tuple[str, tuple[int, ...]], torch.Tensor] = {}

        # The pairs' paths (recorders) and shapes (a dry forward) first: the recipes' binding can be slow work (the
        # pool labels every input) that a typo in a path must not wait for. No hooks while they bind.
        self.attach_recorders()
        self.connectors = ConnectorBank(self.pairs).to(self.device)
        self.check_pairs()
        recorders = [*self.student_recs.values(), *self.teacher_recs.values()]
        for recorder in recorders:
            recorder.remove()
        self.recipes.bind(self)  # the pool labels its inputs here: nothing is recorded
        for recorder in recorders:
            recorder.attach()
        n_conn = sum(p.numel() for p in self.connectors.parameters())
        logger.info(f"Distillation: {len(self.pairs)} feature pair(s), connectors {n_conn:,d} params (training only)")
        if n_conn:
            self.connectors = self.model_to_device(self.connectors)

    def hold_teachers(self) -> None:
        """The teachers handed over by the training run (else loaded here), on the device, with their weights."""
        loaded = self._handed_teachers if self._handed_teachers is not None else load_teachers_frozen_rng(self.opt)
        self._handed_teachers = None  # the model holds them from here on
        if not loaded:
            raise ValueError("DistillModel needs a teacher: network_t + path.pretrain_network_t, or teachers:")
        self.teachers = {name: t.net.to(self.device) for name, t in loaded.items()}
        self.teacher_weights = {name: t.weight for name, t in loaded.items()}
        for name, t in loaded.items():
            get_root_logger().info(f"Teacher '{name}' (weight {t.weight:.3g}): {t.info.describe()}")
            if self.channels_last:
                t.net.to(memory_format=torch.channels_last)

    def resolve_auto_pairs(self, distill: dict | None) -> dict | None:
        """``train.distill`` with its ``auto`` entry made into pairs (kit.distill.pairs.auto), logged as YAML."""
        if not distill or distill.get(AUTO_KEY) is None:
            return {k: v for k, v in distill.items() if k != AUTO_KEY} if distill else distill
        spec = parse_auto(distill[AUTO_KEY], list(self.teachers))
        teacher, several = self.teachers[spec.teacher_name], len(self.teachers) > 1
        # The search draws nothing from the run's random streams: the same pairs written by hand train identically.
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            entries, s_layout, t_layout = automatic_pairs(spec, self.net_g, teacher, self._dry_input(), several)
        merged = merge_auto(distill, entries)
        kept = [name for name in entries if name in merged]
        get_root_logger().info(
            f"Automatic feature pairs (train:distill:auto, every {spec.every}): student {s_layout.describe()}; "
            f"teacher '{spec.teacher_name}' {t_layout.describe()}. {len(kept)} pair(s)"
            f"{'' if len(kept) == len(entries) else f' ({len(entries) - len(kept)} replaced by explicit entries)'}"
            f"; to write them by hand, paste:\n{pairs_yaml({name: entries[name] for name in kept})}"
        )
        return merged

    def attach_recorders(self) -> None:
        """One recorder per (network, source); the pairs' specs are checked against the real module paths here."""
        self.student_recs: dict[str, FeatureRecorder] = {}
        self.teacher_recs: dict[tuple[str, str], FeatureRecorder] = {}
        for source in ("output", "input"):
            chosen = [p for p in self.pairs if p.source == source]
            if chosen:
                specs = {p.name: p.student for p in chosen}
                self.student_recs[source] = FeatureRecorder(self.net_g, specs, source, role="student").attach()
            for tname, teacher in self.teachers.items():
                specs = {p.name: p.teacher for p in chosen if p.teacher_name == tname}
                if specs:
                    rec = FeatureRecorder(teacher, specs, source, role=f"teacher '{tname}'").attach()
                    self.teacher_recs[(tname, source)] = rec

    def compile_networks(self) -> list[str]:
        """The student, every teacher (its inference, hooks included) and the connectors, when there are any."""
        hooked = self.recipes.hooking_teacher()
        if hooked:  # they stop or rewrite the teacher's forward from a hook added per step
            raise ValueError(
                f"train:compile cannot compile a teacher that train:recipes:{hooked[0]} hooks per step; "
                f"set train:compile: false or remove recipes:{hooked[0]}"
            )
        names = super().compile_networks()
        for name, teacher in self.teachers.items():
            compile_in_place(teacher, self.compile_mode)
            names.append(f"teacher '{name}'")
        if len(self.connectors.state_dict()):
            compile_in_place(self.connectors, self.compile_mode)
            names.append("connectors")
        return names

    def trainable_parameter_groups(self) -> list[dict]:
        groups = super().trainable_parameter_groups()
        connector_params = list(self.connectors.parameters())
        if connector_params:
            groups.append({"params": connector_params, "name": "connectors"})
        return groups

    def _dry_input(self) -> torch.Tensor:
        size = dry_input_size(self.opt)
        channels = int(self.opt["network_g"].get("num_in_ch", 3))
        return torch.rand(1, channels, size, size, device=self.device)

    def check_pairs(self) -> None:
        """One dry forward of student, teachers and connectors: every pair must agree in shape."""
        if not self.pairs:
            return
        was_training = self.net_g.training
        self.net_g.eval()
        self.connectors.eval()
        try:
            with torch.no_grad():
                lq = self._dry_input()
                for teacher in self.teachers.values():
                    teacher(lq)
                self.net_g(lq)
                t_feats = self.teacher_features(lq)
                connected = self.connectors(self.student_features(lq), self.feature_sizes(t_feats))
            dry_check(self.pairs, connected, t_feats, self.connectors)
        finally:
            self.net_g.train(was_training)
            self.connectors.train()

    def feed_data(self, data: dict) -> None:
        super().feed_data(data)
        cached = data.get("teacher")  # train.teacher_cache: {name: (N, 3, sH, sW)} cropped with the GT
        if cached is not None:
            if set(cached) != set(self.teachers):
                raise ValueError(
                    f"the batch holds cached images of teachers {sorted(cached)}, the options declare "
                    f"{sorted(self.teachers)}; delete the teacher cache folder so that it is rebuilt"
                )
            cached = {name: cached[name].to(self.device).float() for name in self.teachers}
        self.cached_teacher_images = cached

    # ---------------------------------------------------------------- features
    def teacher_features(self, lq: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The pairs' recorded teacher features as maps (tokens ``(N, L, C)`` read on the grid of ``lq``, by default
        the batch's), float32."""
        hw = self.input_grid(lq)
        recs = self.teacher_recs
        return {p.name: as_map(recs[(p.teacher_name, p.source)].get(p.name), hw).float() for p in self.pairs}

    def student_features(self, lq: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The pairs' recorded student features as maps (graph kept), as :meth:`teacher_features`."""
        hw = self.input_grid(lq)
        return {p.name: as_map(self.student_recs[p.source].get(p.name), hw) for p in self.pairs}

    def input_grid(self, lq: torch.Tensor | None) -> tuple[int, int]:
        """``(H, W)`` of ``lq``, else of the batch; square when there is none (token grids are read by its ratio)."""
        lq = getattr(self, "lq", None) if lq is None else lq
        return (1, 1) if lq is None else tuple(lq.shape[-2:])

    @staticmethod
    def feature_sizes(t_feats: dict[str, torch.Tensor]) -> dict[str, tuple[int, int]]:
        return {name: tuple(t.shape[-2:]) for name, t in t_feats.items() if t.dim() == 4}

    def teacher_images(self, lq: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every teacher's image for ``lq`` (frozen, eval, no grad); records their features as a side effect."""
        with torch.no_grad(), self.autocast():
            return {name: teacher(lq).float() for name, teacher in self.teachers.items()}

    def teacher_target(self, images: dict[str, torch.Tensor]) -> torch.Tensor:
        return weighted_mean_output(images, self.teacher_weights)

    def comparison_images(self, lq: torch.Tensor) -> dict[str, torch.Tensor]:
        """The teacher panel of the validation picture (tiled like the student when ``val.tile`` is set)."""
        with self.autocast(), eager():
            images = {name: self.infer(teacher, lq).float() for name, teacher in self.teachers.items()}
        return {"teacher": self.teacher_target(images).clamp(0, 1)}

    def validation_references(self) -> list[str]:
        return ["", "_to_teacher"]

    def reference_images(self, name: str, gt: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The GT when there is one; the teacher's image when there is none, or with ``val.against_teacher``.

        The teacher's image of each validation input is computed once per run and kept as 8 bits (what the
        metrics read), so a big teacher costs one pass over the validation set, not one per validation.
        """
        refs = super().reference_images(name, gt)
        if gt is None or self.opt["val"].get("against_teacher", False):
            key = (name, tuple(self.lq.shape))
            if key not in self._val_teacher:
                image = self.comparison_images(self.lq.float())["teacher"]  # (1, 3, sH, sW), clamped
                self._val_teacher[key] = quantize(image).to(torch.uint8).cpu()
            refs["_to_teacher"] = self._val_teacher[key].to(self.device).float() / 255.0
        return refs

    # ------------------------------------------------------------------ a step
    def compute_losses(self, current_iter: int) -> tuple[torch.Tensor, OrderedDict]:
        """This step's loss terms by log key, in the order they are summed (and draw random numbers), and their sum."""
        loss_dict: OrderedDict[str, torch.Tensor] = OrderedDict()
        if not hasattr(self, "gt") and self.cri_pix is not None:
            raise ValueError(
                "the training batch has no 'gt' but train:pixel_opt needs one; with an LQ-only dataset "
                "remove pixel_opt (and the mix recipe): the teacher's image (train:distill:output) is the target"
            )

        # 1. Teachers: images and recorded features are constants for this step (images read from the
        #    teacher cache when the batch carries them: output-only distillation, no teacher forward).
        t_images = self.cached_teacher_images or self.teacher_images(self.lq)  # {name: (N, 3, sH, sW)}
        t_target = self.teacher_target(t_images)
        t_feats = self.teacher_features(self.lq) if self.pairs else {}

        # 2. Student forward; its recorded features keep their graph.
        with self.autocast():
            self.output = self.net_g(self.lq)
        output = self.output.float()
        step = Step(self, current_iter, output, t_images, t_target, t_feats)

        # 3. Pixel loss against the ground truth, or against what the recipes make of it (the GT/teacher mix).
        if self.cri_pix is not None:
            loss_dict["l_pix"] = self.cri_pix(output, self.recipes.pixel_target(self.gt, t_target, current_iter))

        # 4. Output distillation, then the recipes' terms that come before the pairs (the contrastive term).
        loss_dict.update(self.output_terms(output, t_images, t_target))
        loss_dict.update(self.recipes.terms(step, after_pairs=False))

        # 5. Feature pairs: student feature → connector → loss against the teacher feature (scaled by balancing).
        if self.pairs:
            loss_dict.update(self.pair_terms(step, loss_dict.get("l_pix", loss_dict.get("l_out"))))

        # 6. The recipes' other terms, in their fixed order: feature mixing, upcycling, the teacher pool.
        loss_dict.update(self.recipes.terms(step, after_pairs=True))
        l_total = output.new_zeros(())
        for term in loss_dict.values():
            l_total = l_total + term
        return l_total, loss_dict

    def pair_terms(self, step: Step, reference: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Each pair's loss (``l_<pair>``), balanced by the recipes; sets ``step.connected``.

        A loss with ``prepare_target`` (CWD) gets the teacher's side computed once per step for every pair that reads
        the same teacher feature with an equal ``target_key`` (no autograd; the teacher feature is a constant).
        """
        with self.autocast():  # under amp the student's features are half precision, and so is its connector
            step.connected = self.connectors(self.student_features(self.lq), self.feature_sizes(step.teacher_features))
        targets: dict[tuple, object] = {}
        terms = {}
        for pair in self.pairs:
            loss, target = self.cri_pairs[pair.name], step.teacher_features[pair.name]
            if hasattr(loss, "prepare_target"):
                key = (pair.teacher_name, pair.source, pair.teacher, loss.target_key())
                if key not in targets:
                    targets[key] = loss.prepare_target(target)
                target = targets[key]
            term = loss(step.connected[pair.name].float(), target)
            terms[f"l_{pair.name}"] = term * self.recipes.pair_scale(pair.name, term, reference, step.current_iter)
        return terms

    def output_terms(
        self, output: torch.Tensor, t_images: dict[str, torch.Tensor], t_target: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Output distillation: the student's image vs the teachers' (weighted mean, or one term each)."""
        if self.cri_out is None:
            return {}
        if self.output_spec.teachers == "each" and len(t_images) > 1:
            weights = self.teacher_weights
            return {f"l_out_{n}": weights[n] * self.cri_out(output, image) for n, image in t_images.items()}
        return {"l_out": self.cri_out(output, t_target)}

    # --------------------------------------------------------- state / resume
    def after_optimizer_step(self, current_iter: int) -> None:
        """The recipes that change the weights after the step (the channel fade)."""
        self.recipes.after_step(current_iter)

    def extra_training_state(self) -> dict:
        bare = self.get_bare_model(self.connectors)
        state = {"connectors": {k: v.detach().cpu() for k, v in bare.state_dict().items()}}
        state["recipes"] = self.recipes.state_dict()
        return state

    def resume_training(self, resume_state: dict) -> None:
        bare = self.get_bare_model(self.connectors)
        if len(bare.state_dict()) and "connectors" not in resume_state:
            raise ValueError("the resume state has no connector weights; it was not written by DistillModel")
        if "connectors" in resume_state:
            bare.load_state_dict(resume_state["connectors"])
        self.recipes.load_state_dict(resume_state.get("recipes", {}))
        super().resume_training(resume_state)
