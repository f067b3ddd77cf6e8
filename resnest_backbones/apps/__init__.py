"""Application code above the adapters: the command-line tools' logic (every ``tools/*.py`` launches a ``main`` here,
also installed as a ``resnest-*`` console entry), detectron2's trainer, launcher, export and evaluation, the
OpenMMLab deployment tools, the quick starts' drawings, and the benchmarks (``apps.benchmark``). Importing an
adapter never imports this package."""
