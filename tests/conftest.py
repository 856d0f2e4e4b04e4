"Tiny learners trained once per session: the suite must stay fast on a 2-core CPU."
import os, warnings
os.environ.setdefault('MPLBACKEND', 'Agg')
import pytest, torch
from fastai.vision.all import Learner, accuracy, set_seed
from fastcam.all import *

warnings.filterwarnings('ignore', category=UserWarning)

def digits_learner(cbs=None, n_train=320, n_valid=96, seed=0, bs=32):
    "A small CNN on digit scenes; the same seed gives the same learner"
    set_seed(seed, reproducible=True)     # first: the DataLoaders draw their shuffling seed when they are made
    dls = digit_dls(n_train=n_train, n_valid=n_valid, seed=seed, bs=bs)
    set_seed(seed, reproducible=True)
    return Learner(dls, digit_cnn(dls.c), metrics=accuracy, cbs=cbs)

def fit_quietly(learn, epochs=2, lr=1e-2, **kw):
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(epochs, lr, **kw)
    return learn

def hooks_on(model):
    "Every forward/backward hook still registered on any module of `model`"
    return [h for m in model.modules() for h in (*m._forward_hooks.values(), *m._forward_pre_hooks.values(),
                                                 *m._backward_hooks.values())]

@pytest.fixture(scope='session')
def trained():
    "A learner trained two epochs with `GradCAMCallback(k=9)` attached (shared: tests must not train it further)"
    return fit_quietly(digits_learner(cbs=GradCAMCallback(k=9)))
