"""Compound-scaling search on digits: the paper's STEP 1 (phi = 1, alpha * beta^2 * gamma^2 ~= 2), small.

    kerasnets search recipes/search_digits.py --max-trials 6 --oracle grid

Each trial builds EfficientNet at phi = 1 on a phi = 0 base at 32 px (the B0 layout; resolution
32 x gamma rounded to a multiple of 8) and trains it 4 epochs on the embedded digits dataset.
About 1.5 minutes a trial on 2 CPU cores: 6 trials fit in 10 minutes.
"""

from kerasnets.tuning import SearchRecipe, SearchSpace

SEARCH = SearchRecipe(
    name="search_digits",
    data="digits",
    base_resolution=32,
    phi=1.0,
    epochs=4,
    batch_size=64,
    learning_rate=1e-2,
    model_options={"bn_momentum": 0.9, "drop_connect_rate": 0.0},
    train_options={"crop_scale": (0.85, 1.0), "flip": False},
    eval_options={"resize_method": "bilinear"},
    space=SearchSpace(alphas=(1.0, 1.1, 1.2, 1.3, 1.4), betas=(1.0, 1.05, 1.1, 1.15, 1.2),
                      gammas=(1.0, 1.05, 1.1, 1.15, 1.2, 1.25), target=2.0, tolerance=0.1),
    objective="val_accuracy",
    max_trials=6,
    smoke={"epochs": 1, "steps_per_epoch": 2, "eval_steps": 1, "run_eagerly": True},
)
