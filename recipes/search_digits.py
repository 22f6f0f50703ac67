"""Compound-scaling search on digits: the paper's STEP 1 (phi = 1, alpha * beta^2 * gamma^2 ~= 2), small.

    kerasnets search recipes/search_digits.py --max-trials 4 --oracle grid

Each trial builds EfficientNet at phi = 1 on a phi = 0 base at 32 px (the B0 layout; resolution
32 x gamma rounded to a multiple of 8) and trains it 4 epochs on the embedded digits dataset.
About 2 minutes a trial on 2 CPU cores (a third of it tracing): the first 4 of the 5 feasible
points, closest to the constraint first, fit in 10 minutes (6 trials measured 13.6 minutes).
"""

from kerasnets.training import Recipe
from kerasnets.tuning import Search, SearchSpace

RECIPE = Recipe(
    name="search_digits",
    data="digits",
    eval_split="validation",  # trials are selected on 10% carved from train, never on test
    epochs=4,
    batch_size=64,
    base_learning_rate=1e-2,
    reference_batch=64,
    label_smoothing=0.1,
    model_options={"bn_momentum": 0.9, "drop_connect_rate": 0.0},
    train_options={"crop_scale": (0.85, 1.0), "flip": False},
    eval_options={"resize_method": "bilinear"},
    search=Search(
        # a coarse grid whose feasible points differ in kind: depth-heavy (1.4, 1.2, 1.0), resolution
        # only (1.0, 1.0, 1.4), depth only (1.6, 1.1, 1.0), the paper's (1.2, 1.1, 1.15), width + resolution
        space=SearchSpace(alphas=(1.0, 1.2, 1.4, 1.6), betas=(1.0, 1.1, 1.2), gammas=(1.0, 1.15, 1.25, 1.4),
                          target=2.0, tolerance=0.1),
        base_resolution=32,
        phi=1.0,
        objective="val_accuracy",
        max_trials=4,
    ),
    smoke={"epochs": 1, "steps_per_epoch": 2, "eval_steps": 1, "run_eagerly": True},
)
