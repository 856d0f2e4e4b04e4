"""Unlearning a shortcut (issue 33): what `UnlearnShortcuts` costs per training epoch, and what the revision achieves, beside
the "right for the right reasons" penalty (Ross et al., 2017) it was measured against.

    python bench/unlearn.py            # the digit CNN and ResNet-18 at 64 px, a mark planted on class 7
    python bench/unlearn.py --quick    # fewer repeats, the CNN only

Cost: one training epoch with / without the callback, interleaved, the fastest of `--reps` each (the same weights each time).
Revision: the model trained on marked scenes, then 3 epochs of `fit_one_cycle` at 1e-3 with the callback (or the penalty);
reliance and the class's accuracy with its mark removed from `recheck_shortcuts`; the accuracy on the same validation scenes
without any mark, beside a model trained on them without the mark.
"""
import argparse, copy, os, time, warnings
warnings.filterwarnings('ignore')
os.environ.setdefault('MPLBACKEND', 'Agg')
import torch, torch.nn.functional as F
from fastai.vision.all import Learner, vision_learner, resnet18, accuracy, set_seed, Callback
from fastcam.all import *
from table import print_table

BOX = (0, 0, 16, 16)     # the cell that holds the mark of `digit_dls(shortcut='7')`

class RightReasons(Callback):
    "Ross et al. (2017): the loss plus `lam` times the squared input gradient of the summed log-probabilities inside the region"
    order = -5
    def __init__(self, box, lam=10.): self.box,self.lam = box,lam
    def before_batch(self):
        if self.training: self.learn.xb = (plain(self.xb[0]).detach().requires_grad_(),)
    def after_loss(self):
        if not self.training: return
        x = self.xb[0]
        g, = torch.autograd.grad(F.log_softmax(plain(self.pred), 1).sum(), x, create_graph=True)
        x0,y0,x1,y1 = self.box
        self.learn.loss_grad = self.learn.loss_grad + self.lam*(g[..., y0:y1, x0:x1]**2).sum()/len(x)

def trained(arch, shortcut):
    if arch=='cnn': return digit_learner(shortcut=shortcut, cbs=GradCAMCallback())
    set_seed(0, reproducible=True)
    learn = vision_learner(digit_dls(shortcut=shortcut), resnet18, pretrained=False, n_in=1, metrics=accuracy, cbs=GradCAMCallback())
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(4, 3e-3)
    return learn

def epoch_cost(learn, reps):
    "The fastest of `reps` interleaved training epochs without and with the callback, from the same weights"
    state,times = copy.deepcopy(learn.model.state_dict()),{'without': [], 'with': []}
    for _ in range(reps):
        for name,cbs in (('without', []), ('with', [UnlearnShortcuts([('7', BOX)])])):
            learn.model.load_state_dict(state)
            t = time.perf_counter()
            with learn.no_bar(), learn.no_logging(), learn.removed_cbs(learn.grad_cam): learn.fit(1, 1e-4, cbs=cbs)
            times[name].append(time.perf_counter()-t)
    learn.model.load_state_dict(state)
    return min(times['with']),min(times['without'])

def accuracy_on(learn, dl):
    with learn.no_bar(), learn.removed_cbs(learn.grad_cam): return float(learn.validate(dl=dl)[1])

def revise(arch, how, clean_acc, unmarked):
    learn = trained(arch, '7')
    learn.validate()
    before = learn.grad_cam.interpretation().find_shortcuts()
    acc0 = accuracy_on(learn, learn.dls.valid)
    t = time.perf_counter()
    cb = UnlearnShortcuts(before) if how=='UnlearnShortcuts' else RightReasons(BOX)
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(3, 1e-3, cbs=cb)
    secs = time.perf_counter()-t
    table = learn.grad_cam.interpretation().recheck_shortcuts(before)
    r = table.iloc[0]
    found = learn.grad_cam.interpretation().find_shortcuts()
    return (arch, how, f"{r.reliance_before:.2f} -> {r.reliance_after:.2f}", f"{r.lost_before:.2f} -> {r.lost_after:.2f}",
            f"{r.gained_before:.2f} -> {r.gained_after:.2f}", f"{r.removed_accuracy_before:.2f} -> {r.removed_accuracy_after:.2f}",
            f"{acc0:.3f} -> {accuracy_on(learn, learn.dls.valid):.3f}", f"{accuracy_on(learn, unmarked):.3f} / {clean_acc:.3f}",
            ', '.join(f"{c} ({k})" for c,k in zip(found['class'][found.flagged], found.kind[found.flagged])) or 'nothing', f"{secs:.0f} s")

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--reps', type=int, default=5)
    p.add_argument('--quick', action='store_true')
    a = p.parse_args()
    torch.set_num_threads(os.cpu_count())
    archs = ['cnn'] if a.quick else ['cnn', 'resnet']
    cost = []
    for arch in archs:
        learn = trained(arch, '7')
        w,wo = epoch_cost(learn, 2 if a.quick else a.reps)
        cost.append((('digit CNN' if arch=='cnn' else 'ResNet-18')+', 64 px', '2000 scenes, bs 64', f"{w:.2f} s / {wo:.2f} s", f"{w/wo:.3f}x"))
        print(cost[-1], flush=True)
    print_table(('model', 'training epoch', 'with / without UnlearnShortcuts', 'ratio'), cost)
    rows = []
    for arch in archs:
        clean = trained(arch, None)
        unmarked = clean.dls.valid.new(shuffle=False)
        clean_acc = accuracy_on(clean, unmarked)
        for how in ('UnlearnShortcuts', 'RRR penalty'):
            rows.append(revise(arch, how, clean_acc, unmarked)); print(rows[-1], flush=True)
    print_table(('model', 'revised with', 'reliance', 'lost', 'gained', "7's accuracy without its mark", 'valid accuracy (marked)',
                 'accuracy without any mark / clean model', 'find_shortcuts after', '3 epochs'), rows)

if __name__ == '__main__': main()
