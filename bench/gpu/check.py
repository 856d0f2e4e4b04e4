# Run on a CUDA machine (see BENCHMARKS.md, round 4): python bench/gpu/check.py; writes $OUT/gpu_check.json
"CUDA and mixed-precision checks of this round's paths: capture, AblationCAM, Captum's views, find_shortcuts, text classifiers."
import os, sys, time, json, warnings
warnings.filterwarnings('ignore')
os.environ.setdefault('MPLBACKEND', 'Agg')
import torch
from fastai.vision.all import Learner, accuracy, set_seed
from fastai.text.all import BaseTokenizer, TextDataLoaders
from fastcam.all import *

out = {}
def hooks_on(model): return sum(len(m._forward_hooks)+len(m._forward_pre_hooks)+len(m._backward_hooks) for m in model.modules())
t0 = time.time()
if not os.environ.get('DRY'): assert torch.cuda.is_available(); print(torch.cuda.get_device_name(0), torch.__version__, flush=True)

# 1. digit CNN on CUDA, mixed precision, every new method in the capture
set_seed(0, reproducible=True)
dls = digit_dls(n_train=2000, n_valid=500)
learn = Learner(dls, digit_cnn(dls.c), metrics=accuracy, cbs=GradCAMCallback(methods=['ablationcam', 'guided-gradcam', 'integrated-gradients', 'gradxinput'])).to_fp16()
with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(8, 1e-2)
cb = learn.grad_cam
out['digits_accuracy'] = float(learn.recorder.values[-1][-1])
out['digits_device'] = str(next(learn.model.parameters()).device)
maps = {m: cb.maps[m]['actual'] for m in ('gradcam', 'ablationcam', 'guided-gradcam', 'integrated-gradients', 'gradxinput')}
out['digits_maps_finite'] = {m: bool(torch.isfinite(v).all()) for m,v in maps.items()}
out['digits_map_shapes'] = {m: list(v.shape) for m,v in maps.items()}
dev = next(learn.model.parameters()).device
x,y = cb.inputs[:9].to(dev),cb.targs[:9].to(dev)
ref = {m: cam(learn.model.float(), x, y, m) for m in ('gradcam', 'ablationcam')}
import copy; cpu = copy.deepcopy(learn.model).cpu()
for m in ref: out[f'{m}_cuda_vs_cpu_maxdiff'] = float((ref[m].cpu() - cam(cpu, x.cpu(), y.cpu(), m)).abs().max() / ref[m].abs().max().clamp_min(1e-12))
learn.validate()
interp = cb.interpretation()
for kw in (dict(method='auto'), dict(heatmap='both'), dict(method='integrated-gradients')): interp.plot_top_losses_cam(k=4, **kw)
out['auto_method'] = pick_method(interp)[0]
out['digits_hooks_left'] = hooks_on(learn.model)
print(json.dumps(out), time.time()-t0, flush=True)

# 2. a planted shortcut, found on the GPU
sl = digit_learner(shortcut=dict(label='4', place='top-right', mark='checker'), cbs=GradCAMCallback())
sl.validate()
df = sl.grad_cam.interpretation().find_shortcuts()
out['shortcut_flagged'] = list(df['class'][df.flagged]); out['shortcut_region'] = df.region[0]
clean = digit_learner(cbs=GradCAMCallback()); clean.validate()
out['clean_flagged'] = list(clean.grad_cam.interpretation().find_shortcuts().query('flagged')['class'])
print(json.dumps(out), time.time()-t0, flush=True)

# 3. a text classifier on CUDA (cuDNN's LSTM: a backward in eval mode is refused unless the replay turns cuDNN off)
import pandas as pd
df = pd.concat([word_texts(1000, 0).assign(is_valid=False), word_texts(300, 1).assign(is_valid=True)], ignore_index=True)
tdls = TextDataLoaders.from_df(df, text_col='text', label_col='label', valid_col='is_valid', bs=64, tok_tfm=BaseTokenizer())
tl = text_learner(tdls, cbs=GradCAMCallback(k=16))
out['text_accuracy'] = float(tl.recorder.values[-1][-1]); out['text_device'] = str(next(tl.model.parameters()).device)
tcb = tl.grad_cam
vocab = tdls.vocab[0]
ids = torch.tensor([vocab.index(w) for ws in deciding_words.values() for w in ws if w in vocab])
hit = lambda m, x: (m.argmax(1).cpu() == torch.isin(x.cpu(), ids).float().argmax(1)).float()
out['text_capture_points'] = float(hit(tcb.maps['gradcam']['actual'], tcb.inputs).mean())
hits = []
for xb,yb in tdls.valid: hits.append(hit(cam(tl.model, xb, yb, layer='auto'), xb))
out['text_cam_points'] = float(torch.cat(hits).mean())
tl.grad_cam.interpretation().plot_top_losses_cam(k=3)
out['text_hooks_left'] = hooks_on(tl.model)
out['seconds'] = time.time()-t0
print(json.dumps(out), flush=True)
json.dump(out, open(os.path.join(os.environ.get('OUT', '.'), 'gpu_check.json'), 'w'), indent=1)
