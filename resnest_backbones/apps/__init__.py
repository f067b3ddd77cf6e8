"""Application code above the adapters: detectron2's trainer and the synthetic datasets' registration
(``tools/train_net.py``). Importing an adapter never imports this package."""
