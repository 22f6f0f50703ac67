"""Progressive learning (EfficientNetV2, Tan & Le 2021, section 4.2): image size and regularization
grow together over training, in stages.

A recipe states its stages as data (``Recipe.stages``: :class:`Stage`; :func:`progressive_stages`
builds the paper's linear ramps). The Trainer runs them as one run: one model, one optimizer and
one learning-rate schedule across stages. At each stage it builds that stage's training pipeline
(:func:`stage_dataset`: the stage's image size, RandAugment, MixUp, CutMix) and sets the model's
dropout and stochastic-depth rates (:func:`apply_rates`) before it traces the stage's step.

Keras' ``Dropout`` (which kerasnets' drop path is, with ``noise_shape=(None, 1, 1, 1)``) reads its
``rate`` attribute when the step is traced: each stage traces its own step, so the new rate is in
its graph, and a ``.keras`` file still holds plain Dropout layers (no custom objects).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras

from kerasnets.layers.data_format import image_shape, split_image_shape
from kerasnets.models.freeze import NOT_STAGED, block_of, model_blocks
from kerasnets.models.weights import leaf_layers, refresh_cached_state

__all__ = ["Stage", "progressive_stages", "RANDAUGMENT_MAGNITUDE_SCALE", "randaugment_option", "apply_rates",
           "model_rates", "check_stages", "stage_augmentation", "stage_load", "stage_dataset", "fixed_input_copy",
           "scale_stage_sizes"]

#: Keras' RandAugment takes a ``factor`` in [0, 1]; the V2 recipe states google/automl's magnitude
#: (autoaugment.py: each op at ``magnitude / 10`` of its range, magnitudes above 10 allowed). The
#: factor is ``magnitude / 30``: it matches automl's translate (10 px per magnitude unit, 1/30 of a
#: 300 px image) and shear (0.03 per unit, Keras' shear factor f shears up to f); Keras' rotation
#: range is wider (360 f degrees against automl's 3 per unit).
RANDAUGMENT_MAGNITUDE_SCALE = 30.0


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of progressive learning.

    Attributes:
        name: shown in logs, the summary and ``history.csv``'s ``phase`` index order.
        epochs: epochs of this stage.
        image_size: the training image size of the stage (evaluation stays at ``Recipe.image_size``).
        randaugment_magnitude: RandAugment magnitude on google/automl's scale (0: off; see
            :data:`RANDAUGMENT_MAGNITUDE_SCALE`); two ops per image unless
            ``Recipe.train_options["randaugment"]`` says ``num_ops``. None: as the recipe's
            ``train_options`` say (a stage that leaves it unset never turns the recipe's off).
        mixup_alpha, cutmix_alpha: of Keras MixUp / CutMix (0: off; None: as ``train_options``).
        dropout_rate: the rate of the model's Dropout before the classifier (None: as built).
        drop_connect_rate: stochastic depth as the builders' ``drop_connect_rate``: block ``b`` of
            ``B`` drops its branch at ``rate * b / B`` (None: as built).
    """

    name: str
    epochs: int
    image_size: int
    randaugment_magnitude: float | None = None
    mixup_alpha: float | None = None
    cutmix_alpha: float | None = None
    dropout_rate: float | None = None
    drop_connect_rate: float | None = None

    def __post_init__(self) -> None:
        for field in ("epochs", "image_size"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"stage {self.name!r}: {field} must be a positive integer, got {value!r}")
        if self.randaugment_magnitude is not None and not 0 <= self.randaugment_magnitude <= RANDAUGMENT_MAGNITUDE_SCALE:
            raise ValueError(f"stage {self.name!r}: randaugment_magnitude must be in [0, "
                             f"{RANDAUGMENT_MAGNITUDE_SCALE:g}] (google/automl's scale; 0: off) or None (as "
                             "train_options), "
                             f"got {self.randaugment_magnitude!r}")
        if not ((self.mixup_alpha is None or self.mixup_alpha >= 0)
                and (self.cutmix_alpha is None or 0 <= self.cutmix_alpha <= 1)):
            raise ValueError(f"stage {self.name!r}: mixup_alpha must be >= 0 and cutmix_alpha in [0, 1] (or None: as "
                             "train_options), got "
                             f"{self.mixup_alpha!r} and {self.cutmix_alpha!r}")
        for field in ("dropout_rate", "drop_connect_rate"):
            value = getattr(self, field)
            if value is not None and not 0 <= value < 1:
                raise ValueError(f"stage {self.name!r}: {field} must be in [0, 1) or None (as built), got {value!r}")


def _ramp(bounds: tuple[float, float] | None, count: int) -> list[float | None]:
    """``np.linspace(low, high, count)`` (google/automl main.py's ramps), or None each."""
    if bounds is None:
        return [None] * count
    low, high = bounds
    return [low + (high - low) * i / max(count - 1, 1) for i in range(count)]


def progressive_stages(epochs: int, image_size: tuple[int, int], count: int = 4,
                       randaugment: tuple[float, float] | None = None, mixup: tuple[float, float] | None = None,
                       cutmix: tuple[float, float] | None = None, dropout: tuple[float, float] | None = None,
                       drop_connect: tuple[float, float] | None = None) -> tuple[Stage, ...]:
    """``count`` stages over ``epochs`` with the EfficientNetV2 ramps of google/automl's main.py.

    Stage ``s`` (0-based) of ``n`` ends at epoch ``int(epochs * (s + 1) / n)`` (main.py:
    ``max_steps = int(ratio * train_steps)``, ``ratio = (s + 1) / n``) and trains at
    ``int(low + (high - low) * ratio)`` px (main.py's size formula, ``image_size = (ibase,
    train_size)``: the first stage is already above ``ibase``). Every other ``(low, high)`` pair is
    ramped as ``np.linspace(low, high, n)`` (main.py's ``ram_list``, ``mixup_list``, ``cutmix_list``,
    ``dp_list``); None leaves that setting as the recipe's ``train_options`` (RandAugment, MixUp,
    CutMix) or as built (rates).
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer (stages), got {count!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < count:
        raise ValueError(f"epochs must be an integer >= count={count} (every stage at least one epoch), got {epochs!r}")
    ends = [int(epochs * (s + 1) / count) for s in range(count)]
    low, high = image_size
    ramps = {name: _ramp(bounds, count) for name, bounds in (("randaugment_magnitude", randaugment),
                                                              ("mixup_alpha", mixup), ("cutmix_alpha", cutmix),
                                                              ("dropout_rate", dropout),
                                                              ("drop_connect_rate", drop_connect))}
    stages = []
    for s in range(count):
        values = {k: v[s] for k, v in ramps.items()}
        stages.append(Stage(f"stage{s + 1}", ends[s] - (ends[s - 1] if s else 0),
                            int(low + (high - low) * (s + 1) / count), **values))
    return tuple(stages)


def scale_stage_sizes(stages: tuple[Stage, ...], old: int, new: int) -> tuple[Stage, ...]:
    """``stages`` with their image sizes scaled by ``new / old`` (CLI ``--image-size``: the recipe's
    evaluation size moves, the stages follow it), each at least 8 px."""
    return tuple(dataclasses.replace(s, image_size=max(8, round(s.image_size * new / old))) for s in stages)


def randaugment_option(stage: Stage, base: Any = False) -> bool | dict:
    """``kerasnets.data.load``'s ``randaugment`` for ``stage`` (``base``: the recipe's own
    ``train_options["randaugment"]``, whose ``num_ops`` it keeps; a stage without a magnitude
    keeps ``base`` itself)."""
    if stage.randaugment_magnitude is None:
        return base
    if not stage.randaugment_magnitude:
        return False
    options = dict(base) if isinstance(base, dict) else {}
    options["factor"] = stage.randaugment_magnitude / RANDAUGMENT_MAGNITUDE_SCALE
    return options


def _dropout_layers(model: keras.Model) -> tuple[list, list]:
    """(Dropout layers that are not drop path, [(drop-path layer, b / B)]) of ``model``."""
    blocks = [b for b in model_blocks(model) if b not in NOT_STAGED]
    plain, paths = [], []
    for layer in leaf_layers(model):
        if not isinstance(layer, keras.layers.Dropout):
            continue
        shape = layer.noise_shape
        if shape is not None and tuple(shape)[1:] == (1, 1, 1) and block_of(layer.name) in blocks:
            paths.append((layer, blocks.index(block_of(layer.name)) / len(blocks)))
        else:
            plain.append(layer)
    return plain, paths


def _check_rates(model, plain: list, paths: list, dropout_rate, drop_connect_rate) -> None:
    if dropout_rate and not plain:
        raise ValueError(f"dropout_rate={dropout_rate} but model {model.name!r} has no Dropout layer: build it "
                         "with dropout_rate > 0 (e.g. the preset's)")
    if drop_connect_rate and not paths:
        raise ValueError(f"drop_connect_rate={drop_connect_rate} but model {model.name!r} has no stochastic-depth "
                         "layers: build it with drop_connect_rate > 0")
    for layer in (plain if dropout_rate else []) + [p for p, _ in paths if drop_connect_rate]:
        if not hasattr(layer, "seed_generator"):  # Keras makes it only for a rate > 0
            raise ValueError(f"layer {layer.name!r} was built with rate 0 and cannot drop: build the model with "
                             "a rate > 0")


def _set_rate(layer, rate: float) -> None:
    layer.rate = float(rate)


def apply_rates(model: keras.Model, dropout_rate: float | None, drop_connect_rate: float | None) -> None:
    """Set the dropout rate of ``model``'s plain Dropout layers (the one before the classifier) and
    its stochastic depth (block ``b`` of ``B``: ``drop_connect_rate * b / B``, as the builders ramp
    it). None leaves a rate as it is. A rate > 0 for layers the model does not have (it was built
    with rate 0, so they were left out) is a ValueError that says how to build it. Takes effect in
    steps traced afterwards (Keras' Dropout reads ``rate`` when traced)."""
    plain, paths = _dropout_layers(model)
    _check_rates(model, plain, paths, dropout_rate, drop_connect_rate)
    for layer in plain if dropout_rate is not None else ():
        _set_rate(layer, dropout_rate)
    for layer, fraction in paths if drop_connect_rate is not None else ():
        _set_rate(layer, drop_connect_rate * fraction)


def model_rates(model: keras.Model) -> dict[str, Any]:
    """The rates ``model``'s layers hold now: ``dropout_rate`` (the plain Dropout layers', one value
    or None) and ``drop_connect_rate`` (``B`` times the rate of the last block's drop path: the
    builders' parameter; None without drop path)."""
    plain, paths = _dropout_layers(model)
    dropout = sorted({round(float(layer.rate), 6) for layer in plain})
    last = max(paths, key=lambda item: item[1], default=None)
    return {"dropout_rate": (dropout[0] if len(dropout) == 1 else dropout) if dropout else None,
            "drop_connect_rate": round(float(last[0].rate) / last[1], 6) if last else None}


def check_stages(model: keras.Model, stages: tuple[Stage, ...]) -> None:
    """ValueError unless ``model`` takes every stage's image size (a fixed input takes one size)
    and has the layers whose rates the stages set (before anything trains). The input's height and
    width are read in ``keras.config.image_data_format()``'s layout."""
    if not stages:
        return
    height, width, _ = split_image_shape(tuple(model.input_shape[1:]))
    plain, paths = _dropout_layers(model)
    for stage in stages:
        _check_rates(model, plain, paths, stage.dropout_rate, stage.drop_connect_rate)
        if (height is not None and height != stage.image_size) or (width is not None and width != stage.image_size):
            raise ValueError(f"the model's input is fixed at {height}x{width} but stage {stage.name!r} trains at "
                             f"{stage.image_size} px: build the model with input_shape={image_shape(None, None, 3)} "
                             "for a progressive recipe (every kerasnets classifier takes any size)")


def stage_augmentation(stage: Stage, load_args: dict) -> dict[str, Any]:
    """The augmentation ``stage`` trains with, as ``kerasnets.data.load`` arguments: its own
    RandAugment / MixUp / CutMix, or the run's training load (``load_args``, from the recipe's
    ``train_options``) where the stage leaves one unset (None)."""
    return {"randaugment": randaugment_option(stage, load_args.get("randaugment", False)),
            "mixup_alpha": load_args.get("mixup_alpha", 0.0) if stage.mixup_alpha is None else stage.mixup_alpha,
            "cutmix_alpha": load_args.get("cutmix_alpha", 0.0) if stage.cutmix_alpha is None else stage.cutmix_alpha}


def stage_load(load_args: dict, stage: Stage, first_epoch: int) -> dict:
    """The ``kerasnets.data.load`` arguments of ``stage``'s training pipeline: the run's training
    load ``load_args`` at the stage's size and augmentation (:func:`stage_augmentation`), its stream
    starting at epoch ``first_epoch`` (the stages before it read the epochs before: no stage replays
    another's images and crops)."""
    return {**load_args, "image_size": stage.image_size, "first_epoch": first_epoch,
            **stage_augmentation(stage, load_args)}


def stage_dataset(load_args: dict, stage: Stage, first_epoch: int):
    """The training pipeline of ``stage`` and its info: ``kerasnets.data.load(**stage_load(...))``."""
    from kerasnets import data as kdata

    return kdata.load(**stage_load(load_args, stage, first_epoch))


def fixed_input_copy(model: keras.Model, image_size: int) -> keras.Model:
    """``model`` (a functional model whose image input has no fixed height and width) rebuilt with a
    fixed ``image_size`` input and the same weights: what evaluation contracts, profiles and exports
    of a progressive run describe. ``model`` itself is returned when its input is fixed already.
    The input's layout is ``keras.config.image_data_format()``'s, as the builders' (channels last:
    (None, None, C); channels first: (C, None, None))."""
    height, width, _ = split_image_shape(tuple(model.input_shape[1:]))
    if None not in (height, width):
        return model
    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer":
            shape = layer["config"]["batch_shape"]
            depth = split_image_shape(tuple(shape[1:]))[2]
            layer["config"]["batch_shape"] = [shape[0], *image_shape(image_size, image_size, depth)]
    copy = model.__class__.from_config(config)
    copy.set_weights(model.get_weights())
    refresh_cached_state(leaf_layers(copy))
    return copy

