"""Every method pytorch-grad-cam has (issue 36), fastcam's against pytorch-grad-cam's on the same layer for nine images,
the fastest of `--reps` interleaved runs of each; and AblationCAM on a second small CNN (fastai `ConvLayer`s and
`create_head`, 128 channels at 8x8 at `model[0]`).

    python bench/methods.py
"""
import argparse, os, time, warnings
warnings.filterwarnings('ignore')
import torch, torch.nn as nn
from fastai.vision.all import vision_learner, resnet18, set_seed, ConvLayer, create_head
from fastcam.all import *
from table import print_table
import pytorch_grad_cam as pgc
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

THEIRS = {'gradcam': pgc.GradCAM, 'hirescam': pgc.HiResCAM, 'gradcam++': pgc.GradCAMPlusPlus, 'xgradcam': pgc.XGradCAM,
          'layercam': pgc.LayerCAM, 'eigencam': pgc.EigenCAM, 'eigengradcam': pgc.EigenGradCAM, 'gradcam-elementwise': pgc.GradCAMElementWise,
          'kpcacam': pgc.KPCA_CAM, 'fem': pgc.FEM, 'shapleycam': pgc.ShapleyCAM, 'finercam': pgc.FinerCAM, 'fullgrad': pgc.FullGrad,
          'scorecam': pgc.ScoreCAM, 'ablationcam': pgc.AblationCAM}

def other_cnn(c:int=10)->nn.Sequential:
    "A 4-conv CNN of fastai layers: 128 channels at 8x8 for 64-pixel inputs, and fastai's `create_head`"
    body = nn.Sequential(ConvLayer(1, 32, stride=2), ConvLayer(32, 64, stride=2), ConvLayer(64, 128, stride=2), ConvLayer(128, 128))
    return nn.Sequential(body, create_head(128, c))

def fastest(f, reps):
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); f(); ts.append(time.perf_counter()-t)
    return min(ts)

def theirs_call(name, model, layer, x, y):
    c = THEIRS[name](model=model, target_layers=[] if name=='fullgrad' else [layer])
    try: return c(input_tensor=x, targets=None if name=='finercam' else [ClassifierOutputTarget(int(i)) for i in y])
    finally: getattr(c, 'base_cam', c).activations_and_grads.release()

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--reps', type=int, default=5)
    a = p.parse_args()
    torch.set_num_threads(os.cpu_count())
    set_seed(0)
    dls = digit_dls(n_train=256, n_valid=64)
    models = {'digit CNN, 64 px': digit_learner().model, 'ResNet-18, 64 px': vision_learner(dls, resnet18, pretrained=False, n_in=1).model}
    rows = []
    for mname,model in models.items():
        model.eval()
        layer = model[0] if 'CNN' in mname else model[0][5]
        x = plain(dls.valid.one_batch()[0])[:9]
        with torch.no_grad(): y = model(x).argmax(1)
        for name in THEIRS:
            ours = lambda: cam(model, x, y, name, layer)
            th = lambda: theirs_call(name, model, layer, x, y)
            ours(); th()
            to,tt = [],[]
            for _ in range(a.reps):     # interleaved in runs of 3: the first call after the other library's pays for its memory and threads
                to.append(fastest(ours, 3)); tt.append(fastest(th, 3))
            rows.append((mname, cam_methods[name].title, f"{min(tt)*1e3:.1f} ms / {min(to)*1e3:.1f} ms", f"{min(tt)/min(to):.1f}x"))
            print(rows[-1], flush=True)
    print_table(('model', 'method (9 images)', 'pytorch-grad-cam / fastcam', 'fastcam is faster by'), rows)
    m = other_cnn().eval()
    x = plain(dls.valid.one_batch()[0])[:9]
    with torch.no_grad(): y = m(x).argmax(1)
    to = min(fastest(lambda: cam(m, x, y, 'ablationcam', m[0]), 1) for _ in range(a.reps))
    tt = min(fastest(lambda: theirs_call('ablationcam', m, m[0], x, y), 1) for _ in range(a.reps))
    print_table(('model', 'layer', 'AblationCAM of 9 images: pytorch-grad-cam / fastcam', 'ratio'),
                [('4-conv CNN (ConvLayer, create_head), 64 px', 'model[0] (128 x 8x8)', f"{tt:.3f} s / {to*1e3:.1f} ms", f"{tt/to:.1f}x")])

if __name__ == '__main__': main()
