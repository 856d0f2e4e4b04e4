"""The callback on a text classifier (issue 27): `fit` with and without it, and `validate()` with and without it, interleaved,
the fastest of each; fastai's AWD_LSTM classifier (small) on the embedded texts.

    python bench/text.py
"""
import argparse, gc, os, time, warnings
warnings.filterwarnings('ignore')
import torch
from fastcam.all import *
from table import print_table

def fastest(f, learn, cb, reps):
    on,off = [],[]
    for _ in range(reps):
        with learn.removed_cbs(cb):
            gc.collect(); t = time.perf_counter(); f(); off.append(time.perf_counter()-t)
        gc.collect(); t = time.perf_counter(); f(); on.append(time.perf_counter()-t)
    return min(on),min(off)

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--reps', type=int, default=5)
    a = p.parse_args()
    torch.set_num_threads(os.cpu_count())
    dls = text_dls(n_train=1000, n_valid=300)
    learn = text_learner(dls, epochs=1)
    cb = GradCAMCallback(); learn.add_cb(cb)
    def fit():
        with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(2, 1e-3)
    def validate():
        with learn.no_bar(): learn.validate()
    rows = []
    for name,f in (('fit_one_cycle(2), history on (2 recorded passes)', fit), ('validate()', validate)):
        f(); on,off = fastest(f, learn, cb, a.reps)
        rows.append(('AWD_LSTM text classifier', f"{name}, 1000 train / 300 valid texts", f"{on:.3f} s / {off:.3f} s", f"{on/off:.3f}x"))
        print(rows[-1], flush=True)
    print_table(('model', 'measurement', 'with / without callback', 'ratio'), rows)

if __name__ == '__main__': main()
