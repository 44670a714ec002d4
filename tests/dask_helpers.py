"""A backbone that logs every image it processes: counts computations across processes."""

import torch
from torch import nn


class CountingStem(nn.Module):
    """Identity that appends the batch size to a log file on every forward pass (after
    ``delay`` seconds: a slow network)."""

    def __init__(self, log, delay=0.0):
        super().__init__()
        self.log = str(log)
        self.delay = delay

    def forward(self, x):
        if x.device.type == "meta":  # shape inference, not a computation
            return x
        if self.delay:
            __import__("time").sleep(self.delay)
        with open(self.log, "a") as fh:  # O_APPEND: small writes are atomic across processes
            fh.write(f"{x.shape[0]}\n")
        return x


def counting_backbone(log, delay=0.0):
    """A small CNN whose first block counts the images run through it."""
    torch.manual_seed(0)
    return nn.Sequential(
        CountingStem(log, delay),
        nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU()),
        nn.Sequential(nn.Conv2d(8, 16, 3, stride=2), nn.ReLU()),
    )


def computed(log):
    """How many images went through the counting stem."""
    try:
        return sum(int(line) for line in open(log))
    except FileNotFoundError:
        return 0
