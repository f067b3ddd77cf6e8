"""Training and evaluation of ResNeSt detectors with detectron2's ``DefaultTrainer`` (``tools/train_net.py``).

Application code above the adapter: importing ``resnest_backbones.detectron2`` does not import this module.

What this adds to detectron2's defaults: ResNeSt-aware checkpoint loading (``ResNeStCheckpointer``), AdamW as an
option (``SOLVER.OPTIMIZER``), COCO/LVIS evaluators chosen by the dataset's ``evaluator_type`` (pycocotools' pure
Python COCO evaluation, since the offline detectron2 has no compiled fast evaluator), the synthetic datasets, and a few
held-out images drawn with their ground truth beside the predictions (``detectron2_visualize``).

Command line: ``tools/train_net.py``, console entry ``resnest-train-net``, or
``python -m resnest_backbones.apps.detectron2_train``::

    python tools/train_net.py --config-file configs/detectron2/quickstart_mask_rcnn_s14_synthetic.yaml
    python tools/train_net.py --config-file configs/detectron2/mask_rcnn_s50_fpn_syncbn_range-scale_1x_coco.yaml \
            --num-gpus 8
    python tools/train_net.py --config-file <cfg> --eval-only MODEL.WEIGHTS <output>/model_final.pth
    python tools/train_net.py --config-file configs/detectron2/quickstart_mask_rcnn_s14_synthetic.yaml --num-gpus 2
"""
import copy
import json
import logging
import os
import sys
import time
import weakref
from collections import OrderedDict

import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, default_setup, hooks
from detectron2.engine.train_loop import TrainerBase
from detectron2.evaluation import COCOEvaluator, LVISEvaluator, verify_results
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping
from detectron2.utils import comm

from .. import config_path
from ..atomic_io import atomic_write_text
from ..compat import lvis_on_numpy2
from ..detectron2 import ResNeStCheckpointer, find_resnest, load_config
from ..detectron2.config import CN
from ..detectron2.resume import ResumeMismatchError
from ..expected_time import FirstIterationsClock, evaluations_left, expected_time_message, process_seconds
from ..fast_inference import to_fast_inference
from ..ownership import release_run_lock
from .detectron2_data import add_synthetic_config, register_synthetic_datasets
from .detectron2_guards import (explain_resume_mismatch, hold_output_dir, previous_config, read_yaml_config,
                                require_full_weights)
from .detectron2_visualize import visualize_predictions
from .detectron2_launch import (check_sync_bn_on_cpu, create_ddp_model, is_cpu_distributed, launch_tool,
                                local_main_first, refuse_one_image_per_process, set_cpu_threads)

# A child of detectron2's logger, so default_setup's handlers print it (and log.txt keeps it).
logger = logging.getLogger("detectron2.resnest_backbones")


def add_training_config(cfg: CN) -> CN:
    """Add this trainer's keys (in place, idempotent): ``SOLVER.OPTIMIZER``, ``SOLVER.BETAS``, ``TEST.VIS_IMAGES``
    and the synthetic dataset's ``DATASETS.SYNTHETIC``. Returns ``cfg``."""
    add_synthetic_config(cfg)
    if "OPTIMIZER" in cfg.SOLVER:
        return cfg
    cfg.SOLVER.OPTIMIZER = "SGD"  # SGD (detectron2's, uses MOMENTUM/NESTEROV) or AdamW (CPU quick start)
    cfg.SOLVER.BETAS = (0.9, 0.999)  # AdamW betas
    cfg.TEST.VIS_IMAGES = 4  # held-out images drawn (truth | predictions) into OUTPUT_DIR/visualizations
    return cfg


def load_training_config(config_file: str = "", opts=(), freeze: bool = True) -> CN:
    """``resnest_backbones.detectron2.load_config`` with this trainer's keys added (malformed YAML: one message)."""
    return read_yaml_config(lambda: load_config(config_file, opts, freeze, add_configs=(add_training_config,)),
                            config_file)


class NumpyCompatLVISEvaluator(LVISEvaluator):
    """detectron2's ``LVISEvaluator`` with numpy's ``np.float`` alias, which the ``lvis`` package (0.5.3, its latest)
    still uses, defined only while it evaluates (``compat.lvis_on_numpy2``): numpy's namespace is unchanged
    elsewhere in the process."""

    def evaluate(self, *args, **kwargs):
        with lvis_on_numpy2():
            return super().evaluate(*args, **kwargs)


class ExpectedTimeHook(hooks.HookBase):
    """Logs once, after the first ``after_iters`` iterations of a run (or of its resumed part), how long the whole
    run will take on this machine: start-up, the remaining iterations and the evaluations
    (``resnest_backbones.expected_time``).

    Args:
        eval_datasets: names of the registered datasets each evaluation runs on (counted when the line is due).
        eval_period: evaluation every this many iterations (0: only after the last one).
        images_per_iteration: training images per iteration, all processes together.
        precise_bn_images: training images detectron2's PreciseBN passes forward before each evaluation (0: none).
        after_iters: the iteration after which to log (iterations 2..after_iters are timed). Default: 20.
    """

    def __init__(self, eval_datasets, eval_period: int, images_per_iteration: int, precise_bn_images: int = 0,
                 after_iters: int = 20):
        self._clock = FirstIterationsClock(after_iters)
        self._eval_datasets = tuple(eval_datasets)
        self._eval_period = eval_period
        self._images_per_iteration = images_per_iteration
        self._precise_bn_images = precise_bn_images

    def after_step(self):
        trainer = self.trainer
        seconds = self._clock.tick(trainer.iter + 1 - trainer.start_iter)
        if seconds is None or not comm.is_main_process():
            return
        done = trainer.iter + 1
        images = sum(len(DatasetCatalog.get(name)) for name in self._eval_datasets)
        logger.info(expected_time_message(
            seconds, self._clock.after_iters, done, trainer.max_iter, images,
            evaluations_left(done, trainer.max_iter, self._eval_period) if images else 0,
            self._images_per_iteration, process_seconds(), self._precise_bn_images))


class Trainer(DefaultTrainer):
    """detectron2's ``DefaultTrainer`` for ResNeSt detectors (see the module docstring)."""

    def __init__(self, cfg):
        if is_cpu_distributed(cfg.MODEL.DEVICE):
            self._init_cpu_distributed(cfg)
            return
        super().__init__(cfg)  # detectron2's own path: one process, or CUDA devices
        # detectron2 built its DetectionCheckpointer: use ours instead, for saving and for the periodic hook.
        self.checkpointer = self._resnest_checkpointer(self._trainer.model, cfg)
        for hook in self._hooks:
            if isinstance(hook, hooks.PeriodicCheckpointer):
                hook.checkpointer = self.checkpointer

    def _resnest_checkpointer(self, model, cfg) -> ResNeStCheckpointer:
        """Saving as detectron2's checkpointer; loading also understands ResNeSt backbone checkpoints."""
        return ResNeStCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))

    def _init_cpu_distributed(self, cfg):
        """``DefaultTrainer.__init__``'s steps, each done by detectron2's own builder, except that the model is
        wrapped for CPU processes: detectron2 passes ``device_ids`` to DistributedDataParallel, which a CPU model
        rejects (see ``detectron2_launch.create_ddp_model``)."""
        TrainerBase.__init__(self)
        cfg = self.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model, broadcast_buffers=False)
        self._trainer = (AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer)(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = self._resnest_checkpointer(model, cfg)
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def build_hooks(self):
        """detectron2's hooks, then ``ExpectedTimeHook`` (its line follows detectron2's progress line)."""
        cfg, built = self.cfg, super().build_hooks()
        # detectron2 adds PreciseBN when enabled and the model has BatchNorms; it runs before each evaluation.
        precise = any(isinstance(hook, hooks.PreciseBN) for hook in built)
        precise_images = cfg.TEST.PRECISE_BN.NUM_ITER * cfg.SOLVER.IMS_PER_BATCH if precise else 0
        return built + [ExpectedTimeHook(cfg.DATASETS.TEST, cfg.TEST.EVAL_PERIOD, cfg.SOLVER.IMS_PER_BATCH,
                                         precise_images)]

    def state_dict(self):
        # detectron2 v0.6 checkpoints no optimizer state (later versions add it under "_trainer", as here), so a
        # resumed AdamW would restart its moment estimates.
        state = super().state_dict()
        state.setdefault("_trainer", self._trainer.state_dict())
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        if "_trainer" in state:
            self._trainer.load_state_dict(state["_trainer"])

    @classmethod
    def build_optimizer(cls, cfg, model):
        name = cfg.SOLVER.OPTIMIZER
        if name == "SGD":
            return super().build_optimizer(cfg, model)
        if name != "AdamW":
            raise ValueError(f"SOLVER.OPTIMIZER must be 'SGD' or 'AdamW', got {name!r}")
        params = get_default_optimizer_params(model, base_lr=cfg.SOLVER.BASE_LR,
                                              weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
                                              bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
                                              weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS)
        return maybe_add_gradient_clipping(cfg, torch.optim.AdamW)(
            params, lr=cfg.SOLVER.BASE_LR, betas=tuple(cfg.SOLVER.BETAS), weight_decay=cfg.SOLVER.WEIGHT_DECAY)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        kind = MetadataCatalog.get(dataset_name).get("evaluator_type")
        if kind == "coco":
            # use_fast_impl=False: pycocotools' own evaluation (the offline detectron2 has no compiled one).
            return COCOEvaluator(dataset_name, output_dir=output_folder, use_fast_impl=False,
                                 max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE)
        if kind == "lvis":
            return NumpyCompatLVISEvaluator(dataset_name, output_dir=output_folder,
                                            max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE)
        raise NotImplementedError(f"No evaluator for dataset {dataset_name!r} (evaluator_type {kind!r}); "
                                  "this trainer evaluates COCO- and LVIS-format instance datasets.")

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """detectron2's evaluation (the backbone runs fused when ``MODEL.RESNEST.FAST_INFERENCE`` is set), then the
        metrics as json and a few drawn predictions under ``OUTPUT_DIR``."""
        results = super().test(cfg, model, evaluators)
        if comm.is_main_process() and cfg.OUTPUT_DIR:
            write_eval_results(cfg.OUTPUT_DIR, results)
            if cfg.TEST.VIS_IMAGES > 0 and cfg.DATASETS.TEST:
                # Only this process draws: the bare model, not its DistributedDataParallel wrapper.
                visualize_predictions(cfg, getattr(model, "module", model), cfg.DATASETS.TEST[0],
                                      cfg.TEST.VIS_IMAGES, os.path.join(cfg.OUTPUT_DIR, "visualizations"))
        return results


def write_eval_results(output_dir: str, results) -> None:
    """The metrics as ``output_dir/eval_results.json`` (atomically: complete or absent)."""
    os.makedirs(output_dir, exist_ok=True)
    atomic_write_text(os.path.join(output_dir, "eval_results.json"), json.dumps(results, indent=2))


def _run(cfg, args):
    """The evaluation or the training of ``main``; returns the metrics."""
    if args.eval_only:
        model = Trainer.build_model(cfg)
        checkpointer = ResNeStCheckpointer(model, save_dir=cfg.OUTPUT_DIR)
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        if not getattr(args, "allow_partial_weights", False):
            require_full_weights(checkpointer, "MODEL.WEIGHTS", cfg.OUTPUT_DIR)
        results = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
        return results
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def fast_inference_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose ResNeSt backbone went through ``resnest_backbones.fast_inference.to_fast_inference``
    (the training model is left untouched)."""
    model = copy.deepcopy(getattr(model, "module", model)).eval()
    prefix, backbone = find_resnest(model)
    if backbone is None:
        raise ValueError("MODEL.RESNEST.FAST_INFERENCE is set but the model has no ResNeSt backbone")
    fused = to_fast_inference(backbone)
    if fused is not backbone:
        parent_name, _, attribute = prefix.rstrip(".").rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attribute, fused)
    return model


def resolve_config_file(path: str) -> str:
    """``path`` as given, else the shipped config of that name (``configs/detectron2/x.yaml``, ``detectron2/x.yaml``
    or ``x.yaml``), so the tool works from any directory and from a pip install."""
    if not path or os.path.exists(path):
        return path
    name = path.split("configs/", 1)[-1]
    for candidate in (name, os.path.join("detectron2", name)):
        try:
            return config_path(candidate)
        except FileNotFoundError:
            continue
    raise FileNotFoundError(f"--config-file {path!r} is neither a file nor a shipped config "
                            f"(see {config_path('detectron2')})")


def check_images_per_process(cfg, world_size: int) -> None:
    """``refuse_one_image_per_process`` for the batch this trainer will use (after detectron2's auto-scaling)."""
    cfg = DefaultTrainer.auto_scale_workers(cfg, world_size)
    refuse_one_image_per_process(cfg.SOLVER.IMS_PER_BATCH, world_size, cfg.MODEL.RESNETS.NORM,
                                 "SOLVER.IMS_PER_BATCH", "MODEL.RESNETS.NORM",
                                 ", SOLVER.REFERENCE_WORLD_SIZE to scale the batch with the process count")


def setup(args):
    """Config from ``--config-file`` and trailing ``KEY VALUE`` overrides; ``OUTPUT_DIR`` held for this run (its run
    lock, released when the process ends or by ``main``); datasets registered; detectron2 logging."""
    args.config_file = resolve_config_file(args.config_file)  # default_setup re-reads it to log it
    cfg = load_training_config(args.config_file, args.opts, freeze=False)
    check_sync_bn_on_cpu(cfg)
    if not args.eval_only:
        check_images_per_process(cfg, comm.get_world_size())
    lock = hold_output_dir(cfg.OUTPUT_DIR, "OUTPUT_DIR")  # before anything is written, the dataset included
    try:
        local_main_first(lambda: register_synthetic_datasets(cfg))  # one process makes the dataset, then all register
        cfg.freeze()
        args.previous_config = previous_config(cfg.OUTPUT_DIR, args.resume)  # default_setup replaces it
        default_setup(cfg, args)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    if lock is not None and lock.taken_over is not None:
        logger.info(lock.describe_takeover())
    threads = set_cpu_threads(cfg.MODEL.DEVICE)
    if threads:
        logger.info(f"{comm.get_local_size()} CPU processes on this machine: {threads} torch threads each "
                    "(set OMP_NUM_THREADS to choose)")
    return cfg


def _summary(results) -> str:
    parts = []
    for dataset, metrics in (results.items() if results else []):
        if not isinstance(metrics, dict):
            continue
        for task in ("bbox", "segm"):
            if task in metrics and "AP" in metrics[task]:
                parts.append(f"{dataset} {task} AP {metrics[task]['AP']:.1f}")
    return ", ".join(parts)


def main(args):
    """Train (or with ``--eval-only`` evaluate) as detectron2's ``tools/train_net.py`` does."""
    start = time.time()
    cfg = setup(args)
    try:
        results = _run(cfg, args)
    except ResumeMismatchError as error:
        raise explain_resume_mismatch(error, cfg.OUTPUT_DIR, getattr(args, "previous_config", None),
                                      cfg.dump()) from None
    finally:
        release_run_lock(cfg.OUTPUT_DIR)
    if comm.is_main_process() and results:
        named = results if all(isinstance(v, dict) and ("bbox" in v or "segm" in v) for v in results.values()) \
            else OrderedDict([(cfg.DATASETS.TEST[0], results)])
        logger.info(f"Done in {(time.time() - start) / 60:.1f} min: {_summary(named)}")
    return results


def cli(argv=None) -> int:
    """``tools/train_net.py`` / ``resnest-train-net``: detectron2's train_net arguments (``--num-gpus`` also starts
    CPU processes), then :func:`main` in every process; returns the exit status."""
    return launch_tool(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
