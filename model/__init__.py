"""DAIF-Net depth from defocus: the network, the thin-lens optical model, self-supervised training,
prediction and evaluation. Depth is metric (metres) everywhere."""

__version__ = "0.1.0"
