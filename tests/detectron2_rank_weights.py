"""Helper run by tests/test_detectron2_distributed.py: ``tools/train_net.py``'s training (same argument parser, launch,
setup and Trainer), after which EVERY process saves the weights it ended with to ``OUTPUT_DIR/rank<R>.pth`` (the tool
itself saves only rank 0's), so the test can compare the processes."""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detectron2.engine import default_argument_parser  # noqa: E402
from detectron2.utils import comm  # noqa: E402

from resnest_backbones.apps.detectron2_launch import launch  # noqa: E402
from resnest_backbones.apps.detectron2_train import Trainer, setup  # noqa: E402


def train_and_save_every_rank(args):
    cfg = setup(args)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
    model = getattr(trainer.model, "module", trainer.model)
    state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    torch.save({"model": state, "wrapped": type(trainer.model).__name__, "iteration": trainer.iter},
               os.path.join(cfg.OUTPUT_DIR, f"rank{comm.get_rank()}.pth"))


if __name__ == "__main__":
    arguments = default_argument_parser().parse_args()
    launch(train_and_save_every_rank, arguments.num_gpus, dist_url=arguments.dist_url, args=(arguments,))
