"""MinkUNet (Choy et al., 2019) on hiclr's sparse tensors, as in MinkowskiEngine's examples.

The architecture is class constants (``PLANES``, ``LAYERS``); a variant is a subclass that changes
them. Layer names carry the tensor stride as in MinkowskiEngine (``conv1p1s2``: from stride 1,
stride 2). The paper's ScanNet network is :class:`MinkUNet14A` with a 512-wide head (CLIP width).
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from hiclr.nn.sparse import BatchNorm, Conv3d, ReLU, SparseTensor, cat


class BasicBlock(nn.Module):
    """ResNet basic block: two 3³ convolutions with batch norm, plus a 1³ projection if widths differ."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int) -> None:
        super().__init__()
        self.conv1 = Conv3d(inplanes, planes, kernel_size=3)
        self.norm1 = BatchNorm(planes)
        self.conv2 = Conv3d(planes, planes, kernel_size=3)
        self.norm2 = BatchNorm(planes)
        self.relu = ReLU(inplace=True)
        self.downsample = (
            nn.Sequential(Conv3d(inplanes, planes, kernel_size=1), BatchNorm(planes))
            if inplanes != planes
            else None
        )

    def forward(self, x: SparseTensor) -> SparseTensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.relu(out.replace(out.feats + residual.feats))


class MinkUNetBase(nn.Module):
    """U-Net over voxels: a 5³ stem, four stride-2 stages down, four transposed stages up.

    Input: a stride-1 :class:`SparseTensor` with ``in_channels`` features (RGB in [-1, 1],
    optionally + normals). Output: a stride-1 tensor on the same voxels with ``out_channels``.
    """

    BLOCK: ClassVar[type[BasicBlock]] = BasicBlock
    PLANES: ClassVar[tuple[int, ...]] = (32, 64, 128, 256, 256, 128, 96, 96)
    LAYERS: ClassVar[tuple[int, ...]] = (2, 2, 2, 2, 2, 2, 2, 2)
    INIT_DIM: ClassVar[int] = 32

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        planes, layers, e = self.PLANES, self.LAYERS, self.BLOCK.expansion
        self.inplanes = self.INIT_DIM
        self.conv0p1s1 = Conv3d(in_channels, self.inplanes, kernel_size=5)
        self.bn0 = BatchNorm(self.inplanes)
        self.relu = ReLU(inplace=True)

        downs, blocks = [], []
        for i in range(4):  # stride 1 -> 2 -> 4 -> 8 -> 16
            downs.append(
                nn.ModuleDict(
                    {
                        f"conv{i + 1}p{2**i}s2": Conv3d(
                            self.inplanes, self.inplanes, kernel_size=2, stride=2
                        ),
                        "bn": BatchNorm(self.inplanes),
                    }
                )
            )
            blocks.append(self._make_layer(planes[i], layers[i]))
        self.down = nn.ModuleList(downs)
        self.down_blocks = nn.ModuleList(blocks)

        skips = (planes[2] * e, planes[1] * e, planes[0] * e, self.INIT_DIM)
        ups, blocks = [], []
        for j in range(4):  # stride 16 -> 8 -> 4 -> 2 -> 1
            ups.append(
                nn.ModuleDict(
                    {
                        f"convtr{j + 4}p{2 ** (4 - j)}s2": Conv3d(
                            self.inplanes, planes[4 + j], kernel_size=2, stride=2, transposed=True
                        ),
                        "bn": BatchNorm(planes[4 + j]),
                    }
                )
            )
            self.inplanes = planes[4 + j] + skips[j]
            blocks.append(self._make_layer(planes[4 + j], layers[4 + j]))
        self.up = nn.ModuleList(ups)
        self.up_blocks = nn.ModuleList(blocks)
        self.final = Conv3d(planes[7] * e, out_channels, kernel_size=1, bias=True)

    def _make_layer(self, planes: int, blocks: int) -> nn.Sequential:
        layers = []
        for _ in range(blocks):
            layers.append(self.BLOCK(self.inplanes, planes))
            self.inplanes = planes * self.BLOCK.expansion
        return nn.Sequential(*layers)

    @staticmethod
    def _conv(stage: nn.ModuleDict) -> Conv3d:
        return next(m for name, m in stage.items() if name != "bn")

    def forward(self, x: SparseTensor) -> SparseTensor:
        out = self.relu(self.bn0(self.conv0p1s1(x)))
        skips = [out]  # strides 1, 2, 4, 8
        for stage, block in zip(self.down, self.down_blocks):
            out = self.relu(stage["bn"](self._conv(stage)(out)))
            out = block(out)
            skips.append(out)
        skips.pop()  # the stride-16 output is not a skip
        for stage, block in zip(self.up, self.up_blocks):
            out = self.relu(stage["bn"](self._conv(stage)(out)))
            out = block(cat(out, skips.pop()))
        return self.final(out)


class MinkUNet14(MinkUNetBase):
    LAYERS = (1, 1, 1, 1, 1, 1, 1, 1)


class MinkUNet14A(MinkUNet14):
    PLANES = (32, 64, 128, 256, 128, 128, 96, 96)


class MinkUNet18(MinkUNetBase):
    LAYERS = (2, 2, 2, 2, 2, 2, 2, 2)


class MinkUNet18A(MinkUNet18):
    PLANES = (32, 64, 128, 256, 128, 128, 96, 96)


class MinkUNet34C(MinkUNetBase):
    LAYERS = (2, 3, 4, 6, 2, 2, 2, 2)
    PLANES = (32, 64, 128, 256, 256, 128, 96, 96)
