"""Learned optimizer: features, interpretable models trained on twin sweeps, stored and evaluated as JSON.

    from loratwin.learn import load_model_set
    models = load_model_set("llama-3.1-8b-instruct")   # shipped models, no scikit-learn needed
    models.predict("starved", [config_features(mix, max_loras=32)])

Training (`loratwin.learn.train`, `loratwin.learn.zoo`, `loratwin.learn.export`) needs the `learn` extra.
"""

from loratwin.learn.bundle import ModelSet, load_model_set, shipped_profiles
from loratwin.learn.evaluators import load_model, predict, predict_target
from loratwin.learn.features import AdapterMix, config_features, workload_features

__all__ = [
    "AdapterMix",
    "ModelSet",
    "config_features",
    "load_model",
    "load_model_set",
    "predict",
    "predict_target",
    "shipped_profiles",
    "workload_features",
]
