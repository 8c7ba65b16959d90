"""The 2020 study's CNN ("Net" in section 4.1 of the paper): its printed modules and sizes.

    150x150x3 -conv1 k7-> 144x144x8 -pool-> 72x72x8
              -conv2 k5-> 68x68x16  -pool-> 34x34x16
              -conv3 k3-> 32x32x4   -pool-> 16x16x4 -flatten-> 1024
              -dropout 0.2-> fc1 512 -ReLU-> fc2 <classes>

BatchNorm follows every convolution (the paper: "Batch Normalization after every
layer"), then ReLU, then 2x2 max-pool. 544,713 parameters for 29 classes.

Other input sizes (``image_size``) keep the layers and size fc1 to what the convolutions
leave: 16x16x4 at 150 px, 5x5x4 at 64 px. Below 30 px nothing is left to classify.
"""

from __future__ import annotations

import torch
from torch import nn

from aslhpc.training.config import MIN_INPUT_SIZE

NUM_CLASSES = 29
INPUT_SIZE = 150


def feature_side(image_size: int) -> int:
    """Side of the last pooled feature map for square ``image_size`` inputs (16 at 150 px)."""
    side = image_size
    for kernel in (7, 5, 3):
        side = (side - kernel + 1) // 2
    return side


class LadNet(nn.Module):
    """Three conv-BN-ReLU-pool stages and two linear layers: the published modules; the order of BN,
    ReLU and pool and the dropout position are our assumptions (docs/reproducing-2020.md)."""

    def __init__(self, num_classes: int = NUM_CLASSES, dropout: float = 0.2,
                 image_size: int = INPUT_SIZE) -> None:
        super().__init__()
        if image_size < MIN_INPUT_SIZE:
            raise ValueError(f"image_size={image_size} leaves no features after three conv+pool stages; "
                             f"use at least {MIN_INPUT_SIZE}")
        self.conv1 = nn.Conv2d(3, 8, kernel_size=7)
        self.conv2 = nn.Conv2d(8, 16, kernel_size=5)
        self.conv3 = nn.Conv2d(16, 4, kernel_size=3)
        self.norm8 = nn.BatchNorm2d(8)
        self.norm16 = nn.BatchNorm2d(16)
        self.norm4 = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2, 2)
        self.dropout = nn.Dropout(dropout)
        self.fc1 = nn.Linear(feature_side(image_size) ** 2 * 4, 512)
        self.fc2 = nn.Linear(512, num_classes)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's output, in order; the shape test checks them against the paper."""
        c1 = torch.relu(self.norm8(self.conv1(x)))
        p1 = self.pool(c1)
        c2 = torch.relu(self.norm16(self.conv2(p1)))
        p2 = self.pool(c2)
        c3 = torch.relu(self.norm4(self.conv3(p2)))
        p3 = self.pool(c3)
        return [c1, p1, c2, p2, c3, p3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Trick: ReLU and max-pool commute (max(relu(a), relu(b)) == relu(max(a, b))), so
        # pooling first gives bit-identical outputs while ReLU and its backward touch 4x
        # fewer elements. On a CPU these memory-bound ops cost as much as the convolutions.
        x = torch.relu(self.pool(self.norm8(self.conv1(x))))
        x = torch.relu(self.pool(self.norm16(self.conv2(x))))
        x = torch.relu(self.pool(self.norm4(self.conv3(x))))
        x = self.dropout(torch.flatten(x, 1))
        x = torch.relu(self.fc1(x))
        return self.fc2(x)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
