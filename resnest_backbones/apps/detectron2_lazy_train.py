"""Training and evaluation with detectron2's Python "LazyConfig" configs (``tools/lazyconfig_train_net.py``).

The same job as detectron2's ``tools/lazyconfig_train_net.py``, reading the same config fields (``model``,
``dataloader.{train,test,evaluator}``, ``optimizer``, ``lr_multiplier``, ``train.*`` as in detectron2's
``configs/common/train.py``), with what the yacs tool has too:

- ``ResNeStCheckpointer`` for ``train.init_checkpoint``: detectron2 checkpoints, ResNeSt backbone checkpoints in any
  layout, ``resnest://<variant>``;
- ``--num-gpus N`` on CPUs (``detectron2_launch``): DDP without ``device_ids`` for a CPU model, SyncBN in a
  multi-process CPU run refused naming every config path, one image per process with BN refused;
- the synthetic shapes dataset made and registered when the config has a ``synthetic`` section (the quick start);
- the metrics written to ``train.output_dir/eval_results.json``.

Command line: ``tools/lazyconfig_train_net.py``, console entry ``resnest-lazyconfig-train-net``, or
``python -m resnest_backbones.apps.detectron2_lazy_train``::

    python tools/lazyconfig_train_net.py --config-file configs/detectron2/lazy/quickstart_mask_rcnn_s14_synthetic.py
    python tools/lazyconfig_train_net.py --num-gpus 8 \
            --config-file configs/detectron2/lazy/mask_rcnn_s50_fpn_syncbn_lsj_100ep_coco.py
    python tools/lazyconfig_train_net.py --config-file <cfg> --eval-only train.init_checkpoint=<output>/model_final.pth
    python tools/lazyconfig_train_net.py --config-file <cfg> --resume     # continue from <output>/last_checkpoint
"""
import logging
import sys
import time

from detectron2.config import LazyConfig, instantiate
from detectron2.config import CfgNode as CN
from detectron2.engine import AMPTrainer, SimpleTrainer, default_setup, default_writers, hooks
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm

from ..detectron2 import ResNeStCheckpointer, resnest_backbone
from ..detectron2.resume import ResumeMismatchError
from ..ownership import release_run_lock
from .detectron2_data import add_synthetic_config, register_synthetic_datasets
from .detectron2_launch import (create_ddp_model, launch_tool, lazy_sync_bn_keys, local_main_first,
                                refuse_one_image_per_process, refuse_sync_bn_on_cpu, set_cpu_threads)
from .detectron2_guards import explain_resume_mismatch, hold_output_dir, previous_config, require_full_weights
from .detectron2_train import ExpectedTimeHook, resolve_config_file, write_eval_results

logger = logging.getLogger("detectron2.resnest_backbones")


def load_lazy_config(config_file: str, opts=()):
    """``LazyConfig.load`` of a path or shipped config name (``configs/detectron2/lazy/x.py``), then the
    ``key=value`` overrides (``LazyConfig.apply_overrides``)."""
    return LazyConfig.apply_overrides(LazyConfig.load(resolve_config_file(config_file)), list(opts))


def _resnest_node(node, path: str = "model"):
    """``(path, node)`` of the config node that builds the ResNeSt backbone (``L(resnest_backbone)(...)``), or
    ``(None, None)``."""
    if hasattr(node, "items"):
        target = node.get("_target_") if "_target_" in node else None
        if target is resnest_backbone or (isinstance(target, str) and target.endswith(".resnest_backbone")):
            return path, node
        for name, child in node.items():
            found = _resnest_node(child, f"{path}.{name}")
            if found[1] is not None:
                return found
    return None, None


def check_lazy_config(cfg, training: bool) -> None:
    """The multi-process checks of ``detectron2_launch`` for a LazyConfig (see the module docstring)."""
    refuse_sync_bn_on_cpu(lazy_sync_bn_keys(cfg.model), cfg.train.device, separator="=")
    path, backbone = _resnest_node(cfg.model)
    if training and backbone is not None and "total_batch_size" in cfg.dataloader.train:
        refuse_one_image_per_process(cfg.dataloader.train.total_batch_size, comm.get_world_size(),
                                     backbone.get("norm", "FrozenBN"), "dataloader.train.total_batch_size",
                                     f"{path}.norm", "")


def register_synthetic(cfg) -> None:
    """Make (if absent) and register the synthetic datasets described by the config's ``synthetic`` section, through
    the yacs tool's registration (``DATASETS.SYNTHETIC``)."""
    if "synthetic" not in cfg:
        return
    synthetic = add_synthetic_config(CN({"DATASETS": CN()})).DATASETS.SYNTHETIC
    unknown = sorted(set(cfg.synthetic) - {k.lower() for k in synthetic})
    if unknown:
        raise KeyError(f"synthetic.{unknown[0]} is not a setting of the synthetic dataset; use "
                       f"{sorted(k.lower() for k in synthetic)}")
    for key, value in cfg.synthetic.items():
        synthetic[key.upper()] = value
    names = {cfg.dataloader[split].dataset.names for split in ("train", "test") if split in cfg.dataloader}
    datasets = CN({"TRAIN": tuple(sorted(names)), "TEST": (), "SYNTHETIC": synthetic})
    register_synthetic_datasets(CN({"DATASETS": datasets}))


def do_test(cfg, model):
    """Evaluate on ``dataloader.test`` with ``dataloader.evaluator``; metrics into ``train.output_dir``."""
    if "evaluator" not in cfg.dataloader:
        return {}
    results = inference_on_dataset(model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator))
    if comm.is_main_process():
        print_csv_format(results)
        write_eval_results(cfg.train.output_dir, results)
    return results


def _test_datasets(cfg):
    """Names of the registered datasets ``do_test`` evaluates on (none without an evaluator)."""
    if "evaluator" not in cfg.dataloader or "test" not in cfg.dataloader:
        return ()
    names = cfg.dataloader.test.dataset.get("names", ())
    return (names,) if isinstance(names, str) else tuple(names)


def do_train(args, cfg):
    """Train as detectron2's ``lazyconfig_train_net.py`` does (its hooks, in its order)."""
    model = instantiate(cfg.model)
    logger.info(f"Model:\n{model}")
    model.to(cfg.train.device)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)
    model = create_ddp_model(model, **cfg.train.ddp)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, train_loader, optimizer)
    checkpointer = ResNeStCheckpointer(model, cfg.train.output_dir, trainer=trainer,
                                       weights_key="train.init_checkpoint")
    main = comm.is_main_process()
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if main else None,
        hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
        hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter),
                             period=cfg.train.log_period) if main else None,
        ExpectedTimeHook(_test_datasets(cfg), cfg.train.eval_period,
                         cfg.dataloader.train.get("total_batch_size", 1)),
    ])
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    # The checkpoint holds the iteration that just finished: resume at the next one.
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)


def do_eval(args, cfg):
    """Evaluate ``train.init_checkpoint``, which must set every weight of the model (unless
    ``--allow-partial-weights``)."""
    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    model = create_ddp_model(model)
    checkpointer = ResNeStCheckpointer(model, weights_key="train.init_checkpoint")
    checkpointer.load(cfg.train.init_checkpoint)
    if not getattr(args, "allow_partial_weights", False):
        require_full_weights(checkpointer, "train.init_checkpoint", cfg.train.output_dir)
    return do_test(cfg, model)


def main(args):
    """``tools/lazyconfig_train_net.py``: train, or with ``--eval-only`` evaluate ``train.init_checkpoint``."""
    start = time.time()
    args.config_file = resolve_config_file(args.config_file)  # default_setup re-reads it to log it
    cfg = load_lazy_config(args.config_file, args.opts)
    check_lazy_config(cfg, training=not args.eval_only)
    lock = hold_output_dir(cfg.train.output_dir, "train.output_dir")  # before anything is written
    previous = None
    try:
        local_main_first(lambda: register_synthetic(cfg))  # one process makes the dataset, then all register it
        previous = previous_config(cfg.train.output_dir, args.resume)  # default_setup replaces it
        default_setup(cfg, args)
        if lock is not None and lock.taken_over is not None:
            logger.info(lock.describe_takeover())
        set_cpu_threads(cfg.train.device)
        results = do_eval(args, cfg) if args.eval_only else do_train(args, cfg)
    except ResumeMismatchError as error:
        raise explain_resume_mismatch(error, cfg.train.output_dir, previous, None) from None
    finally:
        release_run_lock(cfg.train.output_dir)
    if comm.is_main_process():
        logger.info(f"Done in {(time.time() - start) / 60:.1f} min")
    return results


def cli(argv=None) -> int:
    """``tools/lazyconfig_train_net.py`` / ``resnest-lazyconfig-train-net``: detectron2's lazyconfig_train_net
    arguments (``--num-gpus`` also starts CPU processes), then :func:`main` in every process; returns the exit
    status."""
    return launch_tool(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
