"""AblationCAM (issue 28): fastcam's, which replays only what follows the layer for all channels at once, against
pytorch-grad-cam's, which runs the whole model once per ablated channel, for nine images; and how far apart their maps
are after pytorch-grad-cam's normalisation. The fastest of interleaved runs of each.

    python bench/ablation.py            # the digit CNN at model[0], ResNet-18 at 64 px (model[0][5]) and at 128 px (model[0][6])
"""
import argparse, os, time, warnings
warnings.filterwarnings('ignore')
import torch, torch.nn.functional as F
from fastai.vision.all import vision_learner, resnet18, set_seed, Resize
from fastcam.all import *
from table import print_table
from pytorch_grad_cam import AblationCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

def setups(quick):
    learn = digit_learner()
    yield 'digit CNN, 64 px', learn.model, learn.model[0], learn.dls
    for px,stage in ((64, 5), (128, 6)):
        if quick and px==128: continue
        set_seed(0)
        dls = digit_dls(n_train=512, n_valid=64, item_tfms=Resize(px))
        m = vision_learner(dls, resnet18, pretrained=False, n_in=1).model
        yield f'ResNet-18, {px} px', m, m[0][stage], dls

def minmax_up(m, size):
    m = F.interpolate(m[:, None].float(), size=size, mode='bilinear', align_corners=False)[:, 0]
    m = m - m.amin((1, 2), keepdim=True)
    return m/(1e-7 + m.amax((1, 2), keepdim=True))

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--quick', action='store_true'); p.add_argument('--reps', type=int, default=5)
    a = p.parse_args()
    torch.set_num_threads(os.cpu_count())
    rows = []
    for name,model,layer,dls in setups(a.quick):
        model.eval()
        x,y = dls.valid.one_batch(); x,y = plain(x)[:9],plain(y)[:9]
        ours_f = lambda: cam(model, x, y, 'ablationcam', layer)
        theirs_f = lambda: AblationCAM(model, [layer])(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in y])
        ours,theirs = ours_f(),theirs_f()
        t_ours,t_theirs = [],[]
        for _ in range(a.reps):                                   # interleaved: both see the same machine load
            t = time.perf_counter(); ours_f(); t_ours.append(time.perf_counter()-t)
            t = time.perf_counter(); theirs_f(); t_theirs.append(time.perf_counter()-t)
        diff = (minmax_up(ours, x.shape[-2:]) - torch.tensor(theirs)).abs().max().item()
        rows.append((name, f"{module_path(model, layer)}", f"{min(t_theirs):.3f} s / {min(t_ours)*1000:.1f} ms",
                     f"{min(t_theirs)/min(t_ours):.1f}x faster", f"{diff:.1e}"))
        print(rows[-1], flush=True)
    print_table(('model', 'layer', 'AblationCAM of 9 images: pytorch-grad-cam / fastcam', 'ratio', 'max abs diff of the maps'), rows)

if __name__ == '__main__': main()
