"""The fixed cost of each validation pass (issue 29): the callback's work at the end of a pass, on its own, beside its
per-batch work, and the overhead on small and large validation sets, from interleaved runs (the fastest of each).

    python bench/pass_cost.py            # the digit CNN and ResNet-18 at 64 px, 400 and 4,000 items
    python bench/pass_cost.py --quick    # fewer repeats
"""
import argparse, gc, os, time, warnings
warnings.filterwarnings('ignore')
os.environ.setdefault('MPLBACKEND', 'Agg')
import torch
from fastai.vision.all import Learner, vision_learner, resnet18, accuracy, set_seed
from fastcam.all import *
from table import print_table

class Clock:
    "Seconds spent in the callback: in its events (split into the pass end, `after_validate`, and the rest) and in its hook"
    def __init__(self): self.events = self.end = 0.

class TimedGradCAM(GradCAMCallback):
    def __call__(self, event_name):
        t = time.perf_counter(); super().__call__(event_name); dt = time.perf_counter()-t
        self.clock.events += dt
        if event_name=='after_validate': self.clock.end += dt
    def _keep_acts(self, *args):
        t = time.perf_counter(); super()._keep_acts(*args); self.clock.events += time.perf_counter()-t

class RecordingGradCAM(TimedGradCAM):
    "Records every `validate()` in `history`, as `fit` records its passes"
    def before_fit(self): self._fitting,self._epoch0,self._logger,self._checked,self._loss = True,0,None,True,self.learn.loss_func

def setup(arch, n_valid):
    dls = digit_dls(n_train=512, n_valid=n_valid, seed=0, bs=64)
    set_seed(0)
    learn = (Learner(dls, digit_cnn(dls.c), metrics=accuracy) if arch=='cnn' else
             vision_learner(dls, resnet18, pretrained=False, n_in=1, metrics=accuracy))
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(1, 1e-2)
    return learn

def validate(learn):
    with learn.no_bar(): learn.validate()

def interleaved(learn, cb, reps):
    "Fastest validate() without and with `cb`, alternating; the callback's own time (per batch, at the pass end) in its fastest run"
    cb.clock = Clock()
    learn.add_cb(cb)
    validate(learn)
    with learn.removed_cbs(cb): validate(learn)
    off,on,clocks = [],[],[]
    for _ in range(reps):
        with learn.removed_cbs(cb):
            gc.collect(); t = time.perf_counter(); validate(learn); off.append(time.perf_counter()-t)
        cb.clock = Clock()
        gc.collect(); t = time.perf_counter(); validate(learn); on.append(time.perf_counter()-t)
        clocks.append(cb.clock)
    learn.remove_cb(cb)
    end = min(c.end for c in clocks); batch = min(c.events-c.end for c in clocks)
    n_batches = len(learn.dls.valid)
    return dict(off=min(off), on=min(on), ratio=min(on)/min(off), end=end, batch=batch, per_batch=min(off)/n_batches,
                n=len(learn.dls.valid_ds))

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--quick', action='store_true')
    a = p.parse_args()
    torch.set_num_threads(os.cpu_count())
    reps = 5 if a.quick else 11
    rows = []
    for arch,name in (('cnn', 'digit CNN, 64 px'), ('resnet', 'ResNet-18, 64 px')):
        for n_valid in ((400, 4000) if arch=='cnn' else (400,)):
            learn = setup(arch, n_valid)
            for what,cb in (('validate()', TimedGradCAM(k=9)), ('a pass of fit (history, 9 tracked)', RecordingGradCAM(k=9, track=list(range(0, n_valid, n_valid//9))[:9]))):
                r = interleaved(learn, cb, reps)
                rows.append((name, f"{r['n']} items, {what}", f"{r['end']*1000:.1f} ms", f"{r['end']/r['off']:.1%}",
                             f"{r['end']/r['per_batch']:.2f}", f"{r['batch']*1000:.1f} ms", f"{r['on']:.3f} s / {r['off']:.3f} s", f"{r['ratio']:.3f}x"))
                print(rows[-1], flush=True)
    print_table(('model', 'pass', 'pass end', 'share of validation', 'in validation batches', 'per-batch work (all batches)', 'validate() with / without', 'ratio'), rows)

if __name__ == '__main__': main()
