"""One input at a time (issue 35): `learn.predict_cam` against `learn.predict` on one image, and on a batch of 64 against
`learn.get_preds` on the same 64, the fastest of `--reps` interleaved runs of each; the digit CNN and ResNet-18 at 64 px.

    python bench/predict.py
"""
import argparse, os, tempfile, time, warnings
warnings.filterwarnings('ignore')
from pathlib import Path
import torch
from PIL import Image
from fastai.vision.all import vision_learner, resnet18, accuracy, set_seed
from fastcam.all import *
from table import print_table

def fastest(fns:dict, reps:int)->dict:
    "The fastest of `reps` interleaved runs of each function of `fns`"
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k,f in fns.items():
            t = time.perf_counter(); f(); times[k].append(time.perf_counter()-t)
    return {k: min(v) for k,v in times.items()}

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--reps', type=int, default=15)
    a = p.parse_args()
    torch.set_num_threads(os.cpu_count())
    tmp = Path(tempfile.mkdtemp())
    files = []
    for i,img in enumerate(digit_scenes(64, seed=99, held_out=True).image):
        files.append(tmp/f'{i}.png'); Image.fromarray(img).save(files[-1])
    set_seed(0)
    learners = {'digit CNN, 64 px': digit_learner(),
                'ResNet-18, 64 px': vision_learner(digit_dls(n_train=200, n_valid=50), resnet18, pretrained=False, n_in=1, metrics=accuracy)}
    rows = []
    for name,learn in learners.items():
        with learn.no_bar():
            one = fastest({'predict': lambda: learn.predict(files[0]), 'predict_cam': lambda: learn.predict_cam(files[0])}, a.reps)
            dl = learn.dls.test_dl(files)
            many = fastest({'get_preds': lambda: learn.get_preds(dl=learn.dls.test_dl(files)), 'predict_cam': lambda: learn.predict_cam(files)},
                           max(3, a.reps//3))
        rows.append((name, 'one image', f"{one['predict_cam']*1e3:.1f} ms / {one['predict']*1e3:.1f} ms", f"{one['predict_cam']/one['predict']:.2f}x"))
        rows.append((name, '64 images', f"{many['predict_cam']*1e3:.0f} ms / {many['get_preds']*1e3:.0f} ms", f"{many['predict_cam']/many['get_preds']:.2f}x"))
        print(rows[-2:], flush=True)
    print_table(('model', 'input', 'predict_cam / predict (one) or get_preds (64)', 'ratio'), rows)

if __name__ == '__main__': main()
