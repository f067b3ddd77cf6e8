"""``tools/train_net.py`` (single process) plus the test-only fault injection of ``fault_injection.py``.

The training is the project's detectron2 ``Trainer`` unchanged; one extra detectron2 hook kills the process at the
iteration the environment names, or adds a checkpointable whose state kills the process while the checkpoint saved
at that iteration is written.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # fault_injection
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout without pip install

from detectron2.engine import HookBase, default_argument_parser  # noqa: E402

from fault_injection import KillWhenPickled, kill_after, saving_kills  # noqa: E402
from resnest_backbones.apps.detectron2_train import Trainer, setup  # noqa: E402


class _KillingState:
    """A checkpointable whose saved state kills the process when pickled."""

    def state_dict(self):
        return {"fault": KillWhenPickled()}

    def load_state_dict(self, state):
        raise AssertionError("a checkpoint with the fault entry must never be complete")


class FaultInjection(HookBase):
    """Registered after the trainer's own hooks, so its after_step runs after PeriodicCheckpointer's."""

    def before_step(self):
        if saving_kills(self.trainer.iter + 1):
            self.trainer.checkpointer.checkpointables["fault"] = _KillingState()

    def after_step(self):
        kill_after(self.trainer.iter + 1)


def main() -> None:
    args = default_argument_parser().parse_args()
    trainer = Trainer(setup(args))
    trainer.register_hooks([FaultInjection()])
    trainer.resume_or_load(resume=args.resume)
    trainer.train()


if __name__ == "__main__":
    main()
