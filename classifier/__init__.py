"""Department classifier: jieba words + character n-grams, TF-IDF, a linear model plus a vote
of the most similar training messages, calibrated.

`Suggester.suggest(text)` gives the top-3 departments with probabilities; `train.py` trains and
evaluates models. Importing this package does not import scikit-learn (fast bot start-up).
"""

from classifier.data import DataError
from classifier.model import LinearModel, ModelError, load_model
from classifier.suggest import Suggester, Suggestion, build_default_model

__all__ = [
    "DataError",
    "LinearModel",
    "ModelError",
    "Suggester",
    "Suggestion",
    "build_default_model",
    "load_model",
]
