"""The project's benchmarks (application code; ``tools/benchmark*.py`` launch them): ``peers`` (ours against timm,
mmdet and torchvision ResNet-50, per workload), ``variant_sweep`` (every published variant), ``compile``
(``torch.compile``), ``deploy`` (whole models in PyTorch and exported runtimes); ``models``, ``timing``, ``memory``,
``op_profile`` and ``report`` are their shared parts."""
