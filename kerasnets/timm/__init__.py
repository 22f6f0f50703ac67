"""timm checkpoints (``config.json`` + ``model.safetensors``) loaded into kerasnets models, by name."""
