"""Freezing for fine-tuning: whole blocks, found from kerasnets' (= keras.applications') layer names.

The reference recipe is keras.io's "Image classification via fine-tuning with EfficientNet": train the
new classifier on a frozen backbone, then unfreeze the top blocks at a low learning rate, keeping every
BatchNormalization frozen. Two pitfalls are built out here: unfreezing "the last 20 layers" cuts blocks
in half (keras-io#995), so :func:`freeze` works in whole blocks only; and a BatchNormalization layer
must be frozen (``trainable=False``) to run in inference mode during ``fit`` (keras#9214; in Keras 3 a
frozen BN uses its moving statistics and does not update them even when called with training=True).
"""

from __future__ import annotations

import dataclasses
import math
import re

import keras

from kerasnets.models.weights import leaf_layers

__all__ = ["FreezeReport", "TRAIN_ALL", "NOT_STAGED", "model_blocks", "block_of", "freeze", "check_trainable_from"]

#: ``trainable_from`` value that makes every layer trainable, BatchNormalization included (no freezing).
TRAIN_ALL = "all"

_BLOCK_PATTERNS = (
    (re.compile(r"^stem_"), lambda m: "stem"),  # EfficientNet stem
    (re.compile(r"^(block\d+[a-z]+)_"), lambda m: m.group(1)),  # EfficientNet block2a_...
    (re.compile(r"^top_(conv|bn|activation)$"), lambda m: "top"),  # EfficientNet head conv (not top_dropout)
    (re.compile(r"^(conv1|pool1)_"), lambda m: "conv1"),  # ResNet stem: 7x7 or deep (conv1_1_conv, ...)
    (re.compile(r"^(conv\d+_block\d+)_"), lambda m: m.group(1)),  # ResNet conv3_block1_...
    (re.compile(r"^post_(bn|relu)$"), lambda m: "post"),  # pre-activation ResNet (v2): the final BN-ReLU
)


@dataclasses.dataclass(frozen=True)
class FreezeReport:
    """What :func:`freeze` did.

    Attributes:
        frozen_blocks: blocks whose layers are all frozen, in model order.
        trainable_blocks: blocks whose layers are trainable (BatchNormalization aside), in model order.
        trainable_params / non_trainable_params: the model's parameter counts after freezing.
    """

    frozen_blocks: tuple[str, ...]
    trainable_blocks: tuple[str, ...]
    trainable_params: int
    non_trainable_params: int


def block_of(layer_name: str) -> str | None:
    """The block a layer belongs to by its name ("block2b_expand_conv" -> "block2b",
    "conv3_block1_0_bn" -> "conv3_block1", "stem_conv" -> "stem"), or None for layers outside blocks."""
    for pattern, block in _BLOCK_PATTERNS:
        match = pattern.match(layer_name)
        if match:
            return block(match)
    return None


def model_blocks(model: keras.Model) -> list[str]:
    """The model's blocks in order, from its layer names (nested models included).

    EfficientNet (V1 and V2): ``stem``, ``block1a``, ``block2a``, ``block2b``, ..., ``top``; ResNet:
    ``conv1`` (the 7x7 or deep stem with its max pool), ``conv2_block1``, ..., ``conv5_block3``, and
    ``post`` (the final BN-ReLU of pre-activation ResNets, v2). Works for kerasnets models,
    keras.applications EfficientNet/EfficientNetV2/ResNet/ResNetV2 and models loaded from ``.keras`` files. Input,
    rescaling, normalization, pooling, dropout and classifier layers belong to no block.
    """
    blocks: list[str] = []
    for layer in leaf_layers(model):
        block = block_of(layer.name)
        if block is not None and block not in blocks:
            blocks.append(block)
    return blocks


#: blocks that belong to no stage: stems, EfficientNet's ``top`` and ResNetV2's ``post`` (they
#: hold no residual branch, so no stochastic depth either)
NOT_STAGED = ("stem", "conv1", "top", "post")


def _stages(blocks: list[str]) -> dict[int, str]:
    """Stage number -> first block of that stage: EfficientNet blockN -> N, ResNet convN_block -> N - 1
    (stems, EfficientNet's ``top`` and ResNetV2's ``post`` belong to no stage)."""
    stages: dict[int, str] = {}
    for block in blocks:
        match = re.match(r"block(\d+)|conv(\d+)_block", block)
        if block in NOT_STAGED or match is None:
            continue
        stage = int(match.group(1)) if match.group(1) else int(match.group(2)) - 1
        stages.setdefault(stage, block)
    return stages


def _first_trainable(blocks: list[str], trainable_from: str | int | None) -> int:
    """Index in ``blocks`` of the first trainable block (len(blocks): none)."""
    if trainable_from is None:
        return len(blocks)
    if isinstance(trainable_from, str):
        if trainable_from == TRAIN_ALL:
            return 0
        if trainable_from not in blocks:
            raise ValueError(
                f"trainable_from={trainable_from!r} is not a block of this model; valid blocks: {blocks}"
            )
        return blocks.index(trainable_from)
    if isinstance(trainable_from, bool) or not isinstance(trainable_from, int):
        raise TypeError(
            f"trainable_from must be None, a block name, a stage number or -n (last n blocks), "
            f"got {type(trainable_from).__name__}"
        )
    if trainable_from < 0:
        if -trainable_from > len(blocks):
            raise ValueError(
                f"trainable_from={trainable_from} asks for the last {-trainable_from} blocks but the model has "
                f"{len(blocks)}; use -1..-{len(blocks)} (blocks: {blocks})"
            )
        return len(blocks) + trainable_from
    stages = _stages(blocks)
    if trainable_from not in stages:
        raise ValueError(
            f"trainable_from={trainable_from} is not a stage of this model; valid stages (first block): {stages}"
        )
    return blocks.index(stages[trainable_from])


def check_trainable_from(model: keras.Model, trainable_from: str | int | None) -> None:
    """Raise what :func:`freeze` would raise for ``trainable_from`` on ``model``, without freezing:
    lets a multi-phase run reject a bad phase before any phase trains."""
    _first_trainable(model_blocks(model), trainable_from)


def _count(weights) -> int:
    return sum(math.prod(int(d) for d in w.shape) for w in weights)


def freeze(
    model: keras.Model, trainable_from: str | int | None = None, *, train_batch_norm: bool = False
) -> FreezeReport:
    """Freeze the backbone of ``model`` in whole blocks, for fine-tuning. Call it BEFORE ``compile``
    (and compile again after every call: the compiled train step keeps the trainable set it saw).

    Args:
        model: a kerasnets / keras.applications EfficientNet or ResNet, or any model containing one
            (e.g. a backbone used as a layer of a classifier); blocks come from :func:`model_blocks`.
        trainable_from: where training starts; that block and every later one are trainable, everything
            before is frozen.
            - None: the whole backbone is frozen; only the classifier head (layers after the last
              block) trains.
            - a block name: ``"block6a"``, ``"top"``, ``"conv5_block1"``.
            - a stage number i >= 1: the first block of stage i (EfficientNet stages 1..7 = block1..block7,
              ``top`` follows the last; EfficientNetV2 B0-B3/S have stages 1..6; ResNet stages 1..4 =
              conv2..conv5, ``post`` follows conv5 in v2).
            - -n: the last n blocks (``-2`` on EfficientNet-B0: ``block7a`` and ``top``).
            - ``"all"`` (:data:`TRAIN_ALL`): nothing frozen, BatchNormalization included.
        train_batch_norm: also train the BatchNormalization layers of trainable blocks. Default False
            (keras.io keeps them frozen in both phases): they then run in inference mode during ``fit``.

    Layers outside blocks follow their position: those before the first block (input, rescaling,
    normalization) go with the first block, those after the last block (pooling, dropout, classifier,
    and any BatchNormalization of a custom head) are the head and always train. Calling ``freeze`` again
    with another ``trainable_from`` re-decides every layer (phase 2 unfreezes more).

    Returns a :class:`FreezeReport`. Raises ValueError listing the valid blocks or stages for an unknown
    block name or out-of-range stage.
    """
    blocks = model_blocks(model)
    if not blocks:
        raise ValueError(
            f"freeze found no blocks in {model.name!r}: it needs kerasnets/keras.applications layer names "
            "(stem, block1a, ..., top / conv1, conv2_block1, ...); set layer.trainable yourself for other models"
        )
    start = _first_trainable(blocks, trainable_from)
    everything = isinstance(trainable_from, str) and trainable_from == TRAIN_ALL
    trainable_blocks = set(blocks[start:])
    model.trainable = True  # resets every nested layer, so a second call starts from scratch
    leaves = leaf_layers(model)
    last_block_at = max(i for i, layer in enumerate(leaves) if block_of(layer.name) is not None)
    current = blocks[0]  # layers before the first block go with it
    for i, layer in enumerate(leaves):
        block = block_of(layer.name)
        current = block or current
        in_head = block is None and i > last_block_at
        trainable = in_head or current in trainable_blocks
        if isinstance(layer, keras.layers.BatchNormalization) and not (in_head or everything):
            trainable = trainable and train_batch_norm
        layer.trainable = trainable
    frozen = tuple(b for b in blocks if b not in trainable_blocks)
    return FreezeReport(
        frozen_blocks=frozen,
        trainable_blocks=tuple(blocks[start:]),
        trainable_params=_count(model.trainable_weights),
        non_trainable_params=_count(model.non_trainable_weights),
    )
