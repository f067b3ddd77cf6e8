# What tools/lazyconfig_train_net.py reads besides model/dataloader/optimizer/lr_multiplier (the fields of
# detectron2's configs/common/train.py), and detectron2's SGD.
import torch

from detectron2.config import LazyCall as L
from detectron2.solver.build import get_default_optimizer_params

train = dict(
    output_dir="./output",
    init_checkpoint="",  # a detectron2 checkpoint, a ResNeSt backbone checkpoint (any layout) or resnest://<variant>
    max_iter=90000,
    amp=dict(enabled=False),  # automatic mixed precision (CUDA only)
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False, fp16_compression=False),  # DistributedDataParallel
    checkpointer=dict(period=5000, max_to_keep=100),  # PeriodicCheckpointer
    eval_period=5000,  # 0: evaluate once, at the end
    log_period=20,
    device="cuda",
)

optimizer = L(torch.optim.SGD)(
    params=L(get_default_optimizer_params)(weight_decay_norm=0.0),  # params.model is set by the training tool
    lr=0.02,
    momentum=0.9,
    weight_decay=1e-4,
)
