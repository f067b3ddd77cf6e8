"""Where the time of a training step goes: self CPU time per op group (torch.profiler)."""
from typing import Dict, List

from .models import Entry
from .timing import make_input, train_step

PROFILE_GROUPS = (  # (group, substrings of aten/mkldnn op names), first match wins
    ("conv backward", ("convolution_backward", "conv2d_backward", "conv_depthwise2d_backward")),
    ("conv forward", ("convolution", "conv2d")),
    ("BN backward", ("batch_norm_backward",)),
    ("BN forward", ("batch_norm",)),
    ("ReLU fwd+bwd", ("relu", "threshold", "clamp")),
    ("pools fwd+bwd", ("pool",)),
    ("split attention / residual element-wise", ("mul", "add", "sum", "mean", "softmax", "sigmoid", "div", "fill",
                                                 "copy", "where")),
)


def profile_rows(entries: Dict[str, Entry], workload: str, device, memory_format, amp: bool) -> List[Dict]:
    """Self CPU time of one training step per op group and model (torch.profiler; warm-up step first)."""
    from torch.profiler import ProfilerActivity, profile

    rows = []
    for name, entry in entries.items():
        x = make_input(workload, device, memory_format)
        train_step(entry, x, amp)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            train_step(entry, x, amp)
        groups = {group: 0.0 for group, _ in PROFILE_GROUPS}
        groups["other"] = 0.0
        for event in prof.key_averages():
            if not event.key.startswith(("aten::", "mkldnn::")):
                continue
            op = event.key.split("::", 1)[1]
            group = next((g for g, keys in PROFILE_GROUPS if any(k in op for k in keys)), "other")
            groups[group] += event.self_cpu_time_total / 1000
        total = sum(groups.values())
        row = {"model": name, "total ms": f"{total:.0f}"}
        row.update({group: f"{ms:.0f} ({100 * ms / total:.0f}%)" for group, ms in groups.items()})
        rows.append(row)
    return rows
