"""What `find_shortcuts` costs (issue 26): one pass that maps every validation item, and the covering and pasting tests of
the suspect classes, against one `learn.validate()` of the same items; the fastest of interleaved runs of each.

    python bench/shortcuts.py            # the digit CNN and ResNet-18 at 64 px, with a mark planted on one class, 500 items
"""
import argparse, os, time, warnings
warnings.filterwarnings('ignore')
import torch
from fastai.vision.all import vision_learner, resnet18, set_seed
from fastcam.all import *
from table import print_table

def learners():
    yield 'digit CNN, 64 px', digit_learner(shortcut='7', cbs=GradCAMCallback())
    set_seed(0, reproducible=True)
    learn = vision_learner(digit_dls(shortcut='7'), resnet18, pretrained=False, n_in=1, cbs=GradCAMCallback())
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(4, 3e-3)
    yield 'ResNet-18, 64 px', learn

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--reps', type=int, default=5)
    a = p.parse_args()
    torch.set_num_threads(os.cpu_count())
    rows = []
    for name,learn in learners():
        val,find,maps = [],[],[]
        for _ in range(a.reps):                                    # each validate() is a new capture: nothing is reused
            t = time.perf_counter()
            with learn.no_bar(): learn.validate()
            val.append(time.perf_counter()-t)
            interp = learn.grad_cam.interpretation()
            t = time.perf_counter(); interp_class_maps(interp); maps.append(time.perf_counter()-t)
            df = interp.find_shortcuts(); find.append(time.perf_counter()-t)
        n = len(learn.dls.valid_ds)
        rows.append((name, f"{n} items, flagged {list(df['class'][df.flagged])}", f"{min(maps):.2f} s", f"{min(find):.2f} s / {min(val):.2f} s",
                     f"{min(find)/min(val):.1f}x"))
        print(rows[-1], flush=True)
    print_table(('model', 'validation set', 'the pass of class maps', 'find_shortcuts / validate()', 'ratio'), rows)

if __name__ == '__main__': main()
