"""KitSRModel: BasicSR's SRModel with exact torch metrics, AMP/channels_last, tiling and a metrics history.

Used for a network trained alone (the teacher in ``options/teacher.yml``, the scratch baseline in
``options/student.yml``) and as the base of :class:`kit.models.distill_model.DistillModel`.

.. code-block:: yaml

    model_type: KitSRModel
    train:
      amp: null            # bf16 | fp16 | null (off; CPU default)
      channels_last: false
      compile: false       # torch.compile of the networks that train (kit.models.compiling)
      compile_mode: default
    val:
      val_freq: 200
      tile: null           # e.g. 256: tiled validation for large images
      compare_every: 0     # write a comparison PNG every N validations (0: never)
      metrics:
        psnr: {type: calculate_psnr, crop_border: 4, test_y_channel: true}
        ssim: {type: calculate_ssim, crop_border: 4, test_y_channel: true}
"""

from __future__ import annotations

import copy
import json
import time
from collections import OrderedDict
from contextlib import nullcontext
from pathlib import Path

import torch
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY

from kit.models.base_io import SafeModelIO
from kit.models.compiling import compile_in_place, compile_options, eager
from kit.registry import build_loss, build_network, check_spec

_AMP_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


@MODEL_REGISTRY.register()
class KitSRModel(SafeModelIO, SRModel):
    """SRModel with the kit's training conveniences; see the module docstring for its options."""

    def __init__(self, opt: dict) -> None:
        # SRModel.__init__ builds network_g unchecked; check (without building) first so a typo names the key.
        check_spec(ARCH_REGISTRY, opt["network_g"], "network_g")
        train_opt = opt.get("train", {}) if opt["is_train"] else {}
        amp = train_opt.get("amp")
        if amp is not None and amp not in _AMP_DTYPES:
            raise ValueError(f"train.amp '{amp}' is not one of bf16, fp16 or null")
        self.amp_dtype = _AMP_DTYPES.get(amp)
        self.channels_last = bool(train_opt.get("channels_last", False))
        self.compile_mode = compile_options(train_opt)
        self.history_path = Path(opt["path"].get("experiments_root", opt["path"]["log"])) / "history.jsonl"
        self._val_count = 0
        self.baselines: dict[str, dict[str, float]] = {}  # per val dataset: the metrics of bicubic (or the input)
        super().__init__(opt)
        if self.channels_last:
            self.net_g.to(memory_format=torch.channels_last)
        if self.compile_mode is not None:
            get_root_logger().info(f"train.compile: {', '.join(self.compile_networks())} (mode {self.compile_mode})")

    def compile_networks(self) -> list[str]:
        """Compile (in place) what runs in a training step; returns their names. DistillModel adds its own."""
        compile_in_place(self.net_g, self.compile_mode)
        return ["student"]

    # ------------------------------------------------------------------ training
    def init_training_settings(self) -> None:
        """EMA copy, losses, optimizer and scheduler (BasicSR's steps, without mutating the options)."""
        self.net_g.train()
        train_opt = self.opt["train"]
        self.ema_decay = train_opt.get("ema_decay", 0)
        if self.ema_decay > 0 and getattr(self.get_bare_model(self.net_g), "refuses_ema", False):
            raise ValueError(
                f"train.ema_decay is {self.ema_decay}, but {type(self.get_bare_model(self.net_g)).__name__} trains "
                "quantisation ranges (buffers) that an EMA copy would not follow; set train.ema_decay: 0"
            )
        if self.ema_decay > 0:
            get_root_logger().info(f"Use Exponential Moving Average with decay: {self.ema_decay}")
            self.net_g_ema = build_network(self.opt["network_g"], "network_g").to(self.device)
            load_path = self.opt["path"].get("pretrain_network_g")
            if load_path is not None:
                self.load_network(self.net_g_ema, load_path, self.opt["path"].get("strict_load_g", True), "params_ema")
            else:
                self.model_ema(0)
            self.net_g_ema.eval()
        if train_opt.get("perceptual_opt"):
            raise ValueError("train:perceptual_opt needs VGG weights from the internet; this kit trains offline")
        pixel_opt = train_opt.get("pixel_opt")
        self.cri_pix = build_loss(pixel_opt, "train:pixel_opt").to(self.device) if pixel_opt else None
        self.cri_perceptual = None
        self.build_training_losses()
        self.setup_optimizers()
        self.setup_schedulers()
        self.scaler = None
        if self.amp_dtype is torch.float16 and self.device.type == "cuda":
            self.scaler = torch.amp.GradScaler("cuda")

    def build_training_losses(self) -> None:
        """Check that something trains the network (DistillModel adds its distillation terms here)."""
        if self.cri_pix is None:
            raise ValueError("train:pixel_opt is missing; e.g. pixel_opt: {type: L1Loss, loss_weight: 1.0}")
        from kit.distill.gt_free import train_provides_gt

        if not train_provides_gt(self.opt):
            raise ValueError(
                f"model_type {type(self).__name__} trains against the GT, but datasets:train has none "
                "(LQFolderDataset); use model_type DistillModel with train:distill:output (the teacher's image)"
            )

    def trainable_parameter_groups(self) -> list[dict]:
        """Parameter groups of the optimizer: the student's trainable parameters."""
        return [{"params": [p for p in self.net_g.parameters() if p.requires_grad], "name": "student"}]

    def setup_optimizers(self) -> None:
        optim_opt = dict(self.opt["train"]["optim_g"])
        optim_type = optim_opt.pop("type")
        self.optimizer_g = self.get_optimizer(optim_type, self.trainable_parameter_groups(), **optim_opt)
        self.optimizers.append(self.optimizer_g)

    def setup_schedulers(self) -> None:
        """BasicSR's scheduler, its periods/milestones in iterations of ``total_iter`` (:mod:`kit.schedule`)."""
        from kit.schedule import fit_schedule

        saved = self.opt["train"]["scheduler"]
        train = {"total_iter": self.opt["train"].get("total_iter"), "scheduler": copy.deepcopy(saved)}
        fit_schedule(train, None)  # fractions of the run (a training run has fitted them already: a no-op then)
        self.opt["train"]["scheduler"] = train["scheduler"]  # BasicSR pops 'type' from the options: a copy
        try:
            super().setup_schedulers()
        finally:
            self.opt["train"]["scheduler"] = saved

    def autocast(self):
        """Autocast context for ``train.amp`` (a no-op when off)."""
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def feed_data(self, data: dict) -> None:
        mf = torch.channels_last if self.channels_last else torch.contiguous_format
        self.lq = data["lq"].to(self.device, memory_format=mf)
        if "gt" in data:
            self.gt = data["gt"].to(self.device, memory_format=mf)
        elif hasattr(self, "gt"):  # a GT-free batch (LQFolderDataset): no stale GT from an earlier one
            del self.gt

    def compute_losses(self, current_iter: int) -> tuple[torch.Tensor, OrderedDict]:
        """Forward the student and return the total loss and each term (pixel loss vs GT here)."""
        with self.autocast():
            self.output = self.net_g(self.lq)  # (N, 3, sH, sW)
        loss_dict = OrderedDict()
        l_pix = self.cri_pix(self.output.float(), self.gt)
        loss_dict["l_pix"] = l_pix
        return l_pix, loss_dict

    def optimize_parameters(self, current_iter: int) -> None:
        self.optimizer_g.zero_grad(set_to_none=True)
        l_total, loss_dict = self.compute_losses(current_iter)
        if not torch.isfinite(l_total):
            terms = ", ".join(f"{k}={float(v):.4g}" for k, v in loss_dict.items())
            raise FloatingPointError(f"loss is not finite at iter {current_iter} ({terms}); lower the lr or weights")
        if self.scaler is not None:
            self.scaler.scale(l_total).backward()
            self.scaler.step(self.optimizer_g)
            self.scaler.update()
        else:
            l_total.backward()
            self.optimizer_g.step()
        self.after_optimizer_step(current_iter)
        loss_dict["l_total"] = l_total.detach()
        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            # Warm-up (as TF's ExponentialMovingAverage with num_updates): at decay 0.999 a plain EMA is
            # still ~90% the random init after 100 iters, which short CPU runs would validate and export.
            self.model_ema(decay=min(self.ema_decay, (1 + current_iter) / (10 + current_iter)))

    def after_optimizer_step(self, current_iter: int) -> None:
        """After the optimiser's step, before the EMA update (the distillation model's recipes act here)."""

    # ---------------------------------------------------------------- inference
    def eval_network(self) -> torch.nn.Module:
        """The network validation and export read: the EMA copy when there is one."""
        return self.net_g_ema if hasattr(self, "net_g_ema") else self.net_g

    def test(self) -> None:
        net = self.eval_network()
        was_training = net.training
        net.eval()
        with eager():  # validation images of every size: never compiled (train.compile covers the steps)
            self.output = self.infer(net, self.lq)
        net.train(was_training)

    def infer(self, net: torch.nn.Module, lq: torch.Tensor) -> torch.Tensor:
        """``net(lq)`` without gradients, through overlapping tiles when ``val.tile`` is set (large images)."""
        tile = self.opt.get("val", {}).get("tile")
        with torch.no_grad():
            if not tile:
                return net(lq)
            from kit.infer.tiled import tiled_forward

            overlap = int(self.opt["val"].get("tile_overlap", 16))
            return tiled_forward(net, lq, int(self.opt.get("scale", 1)), int(tile), overlap)

    # --------------------------------------------------------------- validation
    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img) -> None:
        from kit.metrics.validation import ValidationMetrics

        dataset_name = dataloader.dataset.opt["name"]
        metrics_opt = self.opt["val"].get("metrics") or {}
        # One set of metrics per reference: "" = the GT, "_to_teacher" = the teacher's image (DistillModel).
        by_ref = {suffix: ValidationMetrics(metrics_opt) for suffix in self.validation_references()}
        compare_every = int(self.opt["val"].get("compare_every", 0))
        self._val_count += 1
        want_compare = compare_every > 0 and self._val_count % compare_every == 0
        baseline = None
        psnr_opt = {k: v for k, v in metrics_opt.items() if "psnr" in str(v.get("type", "")).lower()}
        if psnr_opt and dataset_name not in self.baselines:  # once per dataset: PSNR of bicubic (kit.run.divergence)
            baseline = ValidationMetrics(psnr_opt)
        start = time.time()
        for idx, val_data in enumerate(dataloader):
            name = Path(val_data["lq_path"][0]).stem
            self.feed_data(val_data)
            self.test()
            sr = self.output.detach().float().clamp(0, 1)
            gt = self.gt.float() if hasattr(self, "gt") else None
            for suffix, ref in self.reference_images(name, gt).items():
                by_ref[suffix].update(name, sr, ref)
            if baseline is not None and gt is not None:
                baseline.update(name, self.baseline_image(self.lq.float(), gt), gt)
            if save_img:
                from basicsr.utils import imwrite, tensor2img

                folder = Path(self.opt["path"]["visualization"]) / name
                imwrite(tensor2img([sr.cpu()]), str(folder / f"{name}_{current_iter}.png"))
            if want_compare and idx == 0 and gt is not None:
                self._write_comparison(name, current_iter, sr, gt)
            for attr in ("lq", "gt", "output"):
                if hasattr(self, attr):
                    delattr(self, attr)
        self.metric_results = {f"{m}{suffix}": v for suffix, mt in by_ref.items() for m, v in mt.means().items()}
        if baseline is not None:
            self.baselines[dataset_name] = baseline.means()
        self._initialize_best_metric_names(dataset_name, list(by_ref))
        for metric, value in self.metric_results.items():
            self._update_best_metric_result(dataset_name, metric, value, current_iter)
        if self.metric_results:
            self._log_validation_metric_values(current_iter, dataset_name, tb_logger)
        self.append_history(
            {"kind": "val", "iter": current_iter, "dataset": dataset_name, "seconds": round(time.time() - start, 3)}
            | {k: float(v) for k, v in self.metric_results.items()}
        )

    def validation_references(self) -> list[str]:
        """Metric-name suffixes of the references validation measures against: ``""`` is the GT."""
        return [""]

    def reference_images(self, name: str, gt: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """``{suffix: reference image}`` of the validation image now fed (``self.lq``); the GT when there is one."""
        return {"": gt} if gt is not None else {}

    def _initialize_best_metric_names(self, dataset_name: str, suffixes: list[str]) -> None:
        """BasicSR's best-metric record, with one entry per metric and reference (``psnr``, ``psnr_to_teacher``)."""
        if not hasattr(self, "best_metric_results"):
            self.best_metric_results = {}
        record = self.best_metric_results.setdefault(dataset_name, {})
        for metric, spec in (self.opt["val"].get("metrics") or {}).items():
            better = spec.get("better", "higher")
            for suffix in suffixes:
                init = float("-inf") if better == "higher" else float("inf")
                record.setdefault(f"{metric}{suffix}", {"better": better, "val": init, "iter": -1})

    def baseline_image(self, lq: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """What a student has to beat: bicubic of ``lq`` (the input itself when the sizes agree).

        MATLAB ``imresize`` (:class:`kit.runners.BicubicRunner`), the bicubic of ``kit-eval --bicubic`` and of
        ``export.py``'s check: one bicubic number everywhere.
        """
        if lq.shape[-2:] == gt.shape[-2:]:
            return lq.clamp(0, 1)
        from kit.runners import BicubicRunner

        up = BicubicRunner(int(self.opt.get("scale", 1)))(lq)
        return up[..., : gt.shape[-2], : gt.shape[-1]].to(gt.device)

    def comparison_images(self, lq: torch.Tensor) -> dict[str, torch.Tensor]:
        """Extra panels of the comparison picture besides LQ/bicubic/student/GT (DistillModel: the teacher)."""
        return {}

    def _write_comparison(self, name: str, current_iter: int, sr: torch.Tensor, gt: torch.Tensor) -> None:
        from kit.infer.compare import comparison_png, detail_box, tensor_to_image
        from kit.metrics import psnr, quantize

        scale = int(self.opt.get("scale", 1))
        lq = self.lq.float()
        panels = {"bicubic": self.baseline_image(lq, gt), "student": sr, **self.comparison_images(lq)}
        border = scale
        psnrs = {
            k: float(psnr(quantize(v), quantize(gt), crop_border=border, y_channel=True)[0]) for k, v in panels.items()
        }
        images = {k: tensor_to_image(v) for k, v in {"LQ": lq, **panels, "GT": gt}.items()}
        box = detail_box(images["GT"], scale)
        path = Path(self.opt["path"]["visualization"]) / f"compare_{name}_{current_iter}.png"
        comparison_png(path, images, psnrs, box=box, title=f"{name} @ iter {current_iter} (PSNR Y, border {border})")
        get_root_logger().info(f"Comparison picture: {path}")

    def append_history(self, record: dict) -> None:
        """Append one JSON line to ``experiments/<name>/history.jsonl`` (rank 0 only)."""
        if self.opt.get("rank", 0) != 0:
            return
        self.history_path.parent.mkdir(parents=True, exist_ok=True)
        with self.history_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
