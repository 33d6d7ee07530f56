"""Config sections of a tiny training run: a few-hundred-parameter FNO, a handful of epochs."""

TRAIN_SECTIONS = {
    "device": "cpu",
    "sde": {},
    "model": {"width": 4, "modes": 3, "layers": 1, "embedding_features": 8,
              "embedding_scale": 4.0, "head": [8]},
    "train": {"epochs": 6, "batch_size": 8, "lr": 1e-2, "lr_step": 4, "ema": 0.9,
              "t_min": 1e-2, "t_max": 1.0, "threads": 1, "seed": 0},
}
