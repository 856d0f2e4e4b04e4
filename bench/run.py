"""fastcam benchmarks: every figure is a ratio of two things measured side by side in this one run.

    python bench/run.py            # all five measurements, about 10 minutes on a 2-core CPU
    python bench/run.py --quick    # smaller sets and fewer repeats, a smoke test

Needs the optional benchmark dependencies: pip install -e ".[bench]" (pytorch-grad-cam, psutil).
"""
import argparse, gc, json, os, platform, resource, statistics, subprocess, sys, time, warnings
warnings.filterwarnings('ignore')
os.environ.setdefault('MPLBACKEND', 'Agg')
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from fastai.vision.all import (Learner, vision_learner, resnet18, accuracy, set_seed, Resize, hook_output,
                               ClassificationInterpretation, CrossEntropyLossFlat, DataLoaders, Callback)
from fastai.data.load import DataLoader
from fastcam.all import *
from fastcam.interpret import top_loss_items

def timed(f, n=1):
    "Median seconds of `n` calls of `f`"
    ts = []
    for _ in range(n):
        gc.collect(); t = time.perf_counter(); f(); ts.append(time.perf_counter()-t)
    return statistics.median(ts)

def quiet_validate(learn):
    with learn.no_bar(): return learn.validate()

# ---------------------------------------------------------------- setups
def digit_setup(n_valid, epochs=1):
    dls = digit_dls(n_train=1024, n_valid=n_valid, seed=0, bs=64)
    set_seed(0)
    learn = Learner(dls, digit_cnn(dls.c), metrics=accuracy)
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(epochs, 1e-2)
    return 'digit CNN, 64 px', learn

def resnet_setup(n_valid, px, epochs=1):
    dls = digit_dls(n_train=512, n_valid=n_valid, seed=0, bs=64, item_tfms=Resize(px))
    set_seed(0)
    learn = vision_learner(dls, resnet18, pretrained=False, n_in=1, metrics=accuracy)
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(epochs, 1e-2)
    return f'ResNet-18, {px} px', learn

# ---------------------------------------------------------------- 1. validation overhead
class TimedGradCAM(GradCAMCallback):
    "`GradCAMCallback` that adds up the seconds spent in its own code: events, and the hook inside the forward pass"
    spent = 0.
    def __call__(self, event_name):
        t = time.perf_counter(); super().__call__(event_name); self.spent += time.perf_counter()-t
    def _keep_acts(self, *args):
        t = time.perf_counter(); super()._keep_acts(*args); self.spent += time.perf_counter()-t

class RecordingGradCAM(TimedGradCAM):
    "`TimedGradCAM` that records every `validate()` in `history` with its tracked items, as it records the passes of `fit`"
    def before_fit(self): self._fitting,self._epoch0,self._logger,self._checked,self._loss = True,0,None,True,self.learn.loss_func

def history_bytes(cb, epochs=50)->float:
    "MB the history would hold after `epochs` recorded passes, from the size of the passes recorded so far"
    def size(o): return sum(size(v) for v in o.values()) if isinstance(o, dict) else (o.nbytes if isinstance(o, torch.Tensor) else 0)
    return sum(size(r) for r in cb.history)/len(cb.history)*epochs/2**20

def validation_overhead(learn, reps, cb=None):
    "learn.validate() with GradCAMCallback vs without, alternating runs (the fastest of each); and the callback's own time"
    cb = cb or TimedGradCAM(k=9)
    learn.add_cb(cb)
    quiet_validate(learn)                          # warm up both paths
    with learn.removed_cbs(cb): quiet_validate(learn)
    on,off,own = [],[],[]
    for _ in range(reps):
        with learn.removed_cbs(cb): off.append(timed(lambda: quiet_validate(learn)))
        cb.spent = 0.
        on.append(timed(lambda: quiet_validate(learn)))
        own.append(cb.spent)
    cb.spent = min(own)                            # the callback's own time: the fastest of the runs, as for the wall clock
    learn.remove_cb(cb)
    if cb.history: return dict(without_s=min(off), with_s=min(on), ratio=min(on)/min(off), spread=(max(off)-min(off))/min(off),
                               own_s=cb.spent, own_ratio=(min(off)+cb.spent)/min(off), history_mb=history_bytes(cb))
    return dict(without_s=min(off), with_s=min(on), ratio=min(on)/min(off), spread=(max(off)-min(off))/min(off),
                own_s=cb.spent, own_ratio=(min(off)+cb.spent)/min(off))

# ---------------------------------------------------------------- 2. time to the top-k heatmaps
def cam_fastai_v1(model, x, t):
    "The fastai v1 / lesson recipe: one image at a time, forward and backward through the whole model"
    body = model[0]
    with hook_output(body) as ha, hook_output(body, grad=True) as hg:
        out = model.eval()(x[None])
        out[0, int(t)].backward()
    acts,grads = ha.stored[0],hg.stored[0][0]
    model.zero_grad()
    return F.relu((grads.mean((1, 2), keepdim=True)*acts).sum(0))

def baseline_a(learn, k):
    interp = ClassificationInterpretation.from_learner(learn)
    _,idxs = interp.top_losses(k)
    inps,_,targs,_,_ = interp[idxs]
    x = inps.as_subclass(torch.Tensor)
    return [cam_fastai_v1(learn.model, xi, t) for xi,t in zip(x, targs)]

def baseline_b(learn, k):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    interp = ClassificationInterpretation.from_learner(learn)
    _,idxs = interp.top_losses(k)
    inps,_,targs,_,_ = interp[idxs]
    with GradCAM(model=learn.model, target_layers=[learn.model[0]]) as cam:
        return cam(input_tensor=inps.as_subclass(torch.Tensor), targets=[ClassifierOutputTarget(int(t)) for t in targs])

def fastcam_way(learn, k):
    interp = learn.grad_cam.interpretation()
    return top_loss_items(interp, k)

def time_to_heatmaps(learn, k, reps):
    cb = GradCAMCallback(k=k)
    learn.add_cb(cb)
    quiet_validate(learn)                         # the capture: its cost is counted in 1.
    ours = timed(lambda: fastcam_way(learn, k), reps)
    assert fastcam_way(learn, k)['cam_actual'].shape[0] == k
    with learn.removed_cbs(cb), learn.no_bar():
        a = timed(lambda: baseline_a(learn, k), max(1, reps//3))
        b = timed(lambda: baseline_b(learn, k), max(1, reps//3))
    learn.remove_cb(cb)
    learn.model.eval()
    return dict(fastcam_s=ours, fastai_v1_s=a, pytorch_grad_cam_s=b, speedup_vs_v1=a/ours, speedup_vs_pgc=b/ours)

# ---------------------------------------------------------------- 3. Grad-CAM against one forward pass
def cam_vs_forward(learn, k, reps):
    model,layer = learn.model.eval(),learn.model[0]
    x = torch.cat([b[0] for b in learn.dls.valid])[:k].as_subclass(torch.Tensor)
    t = torch.zeros(k, dtype=torch.long)
    with torch.no_grad(): acts = layer(x)
    head = split_head(model, layer)
    def fwd():
        with torch.no_grad(): model(x)
    def head_only():
        with torch.no_grad(): head(acts)
    f,g = timed(fwd, reps),timed(lambda: grad_cam(model, x, t), reps)
    r,h = timed(lambda: grad_cams(*replay_head(head, acts), t, t), reps),timed(head_only, reps)
    return dict(forward_s=f, grad_cam_s=g, replay_s=r, head_forward_s=h, grad_cam_over_forward=g/f, replay_two_cams_over_forward=r/f)

# ---------------------------------------------------------------- 4. memory
def heap_in_use():
    "Bytes malloc has handed out and not got back (glibc `mallinfo2`): unlike RSS, blind to memory kept after `free`"
    import ctypes
    class MallInfo2(ctypes.Structure): _fields_ = [(n, ctypes.c_size_t) for n in
        'arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost'.split()]
    f = ctypes.CDLL('libc.so.6').mallinfo2
    f.restype = MallInfo2
    m = f()
    return m.uordblks + m.hblkhd

class Noise(torch.utils.data.Dataset):
    "`n` images made on the fly from their index: the data itself takes no memory"
    def __init__(self, n): self.n = n
    def __len__(self): return self.n
    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return torch.rand(1, 64, 64, generator=g), torch.randint(0, 10, (), generator=g)

def peak_rss_child(n, with_cb):
    "In a fresh process: how far resident memory rises (MB) while validating `n` items, with or without the callback"
    import psutil, threading
    dls = DataLoaders(DataLoader(Noise(256), bs=64, num_workers=0), DataLoader(Noise(n), bs=64, num_workers=0), device='cpu')
    set_seed(0)
    learn = Learner(dls, digit_cnn(10), loss_func=CrossEntropyLossFlat())
    held = [0]
    if with_cb:
        cb = GradCAMCallback(k=9)
        class Held(Callback):
            "After every batch: bytes of every tensor the callback holds (its own accounting, free of allocator noise)"
            order = 90
            def after_batch(self):
                p = cb._p.topk
                ts = [cb._p.acts] if p is None else [cb._p.acts, p.losses, *(p.kept or {}).values(), *(v for r in p.pending for v in r.values())]
                held[0] = max(held[0], sum(t.numel()*t.element_size() for t in ts if isinstance(t, torch.Tensor)))
        learn.add_cbs([cb, Held()])
    with learn.no_bar(): learn.validate(dl=DataLoader(Noise(640), bs=64))   # warm up: allocator, kernels
    gc.collect()
    proc,done = psutil.Process(),threading.Event()
    used = lambda: (proc.memory_info().rss, heap_in_use())
    base = used(); peak = list(base)
    def sample():
        while not done.is_set(): peak[:] = map(max, peak, used()); time.sleep(0.002)
    th = threading.Thread(target=sample); th.start()
    with learn.no_bar(): learn.validate()
    done.set(); th.join()
    if with_cb: assert len(learn.grad_cam.all_losses) == n and len(learn.grad_cam.idxs) == 9
    peak = list(map(max, peak, used()))
    return dict(rise_mb=(peak[0]-base[0])/2**20, heap_mb=(peak[1]-base[1])/2**20, held_mb=held[0]/2**20)

def memory(sizes, reps=3):
    "Memory rise during validation, with minus without the callback (median of `reps` fresh processes), and its own tensors"
    rise,heap,held = {},{},{}
    for n in sizes:
        for cb in (False, True):
            runs = []
            for _ in range(reps):
                out = subprocess.run([sys.executable, __file__, '--child-memory', str(n), str(int(cb))], capture_output=True,
                                     text=True, env=dict(os.environ, MALLOC_ARENA_MAX='1'))
                if out.returncode: raise RuntimeError(out.stderr)
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            rise[(n, cb)] = statistics.median(r['rise_mb'] for r in runs)
            heap[(n, cb)] = statistics.median(r['heap_mb'] for r in runs)
            if cb: held[n] = max(r['held_mb'] for r in runs)
    share = lambda d: {n: d[(n, True)]-d[(n, False)] for n in sizes}
    grow = lambda d: d[sizes[-1]]-d[sizes[0]]
    return dict(rss=share(rise), heap=share(heap), held=held)

# ---------------------------------------------------------------- 5. agreement with pytorch-grad-cam
def agreement(learn, n=32):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    model = learn.model.eval()
    x = torch.cat([b[0] for b in learn.dls.valid])[:n].as_subclass(torch.Tensor)
    with torch.no_grad(): t = model(x).argmax(1)
    ours = grad_cam(model, x, t)
    h,w = ours.shape[-2:]
    with GradCAM(model=model, target_layers=[model[0]]) as cam:
        cam.get_target_width_height = lambda inp: (w, h)          # compare at the layer's resolution
        theirs = torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in t]))
    mm = lambda m: torch.stack([normalize_map(o) for o in m])
    return dict(items=n, max_abs_diff=(mm(ours)-theirs).abs().max().item())

# ---------------------------------------------------------------- 6. every gradient method from the one replay
GRADIENT_METHODS = ['gradcam', 'hirescam', 'gradcam++', 'xgradcam', 'layercam']

def interleaved_min(fs:dict, reps:int)->dict:
    "The fastest of `reps` interleaved runs of each function in `fs`"
    ts = {n: [] for n in fs}
    for _ in range(reps):
        for n,f in fs.items(): ts[n].append(timed(f))
    return {n: min(v) for n,v in ts.items()}

class TimedAfterValidate(GradCAMCallback):
    "`GradCAMCallback` that keeps the seconds its `after_validate` (the replay and the maps of the top-k) took"
    def after_validate(self):
        t = time.perf_counter(); super().after_validate(); self.spent = time.perf_counter()-t

def methods_replay(learn, k, reps):
    "The top-k replay (actual, predicted, contrast), and the callback's whole after-validation work: all gradient methods / Grad-CAM alone"
    cb = GradCAMCallback(k=k)
    learn.add_cb(cb); quiet_validate(learn); learn.remove_cb(cb)
    model,layer = learn.model.eval(),learn.model[0]
    with torch.no_grad(): acts = layer(cb.inputs.as_subclass(torch.Tensor))
    ex = dict(targs=cb.targs, probs=cb.probs, cam_actual_for=cb.cam_actual_for, cam_pred_for=cb.cam_pred_for)
    head = split_head(model, layer)
    def replay(methods): return explain_maps(Replay(*replay_head(head, acts)), ex, methods)
    r = interleaved_min(dict(one=lambda: replay(['gradcam']), all=lambda: replay(GRADIENT_METHODS)), reps*30)
    cbs = dict(one=TimedAfterValidate(k=k), all=TimedAfterValidate(k=k, methods=GRADIENT_METHODS))
    spent = {n: [] for n in cbs}
    for _ in range(reps):
        for n,c in cbs.items():
            with learn.added_cbs(c): quiet_validate(learn)
            spent[n].append(c.spent)
    return dict(gradcam_s=r['one'], all_s=r['all'], ratio=r['all']/r['one'], after_one_s=min(spent['one']),
                after_all_s=min(spent['all']), after_ratio=min(spent['all'])/min(spent['one']))

# ---------------------------------------------------------------- 7. Score-CAM against pytorch-grad-cam's
def scorecam_speed(learn, k):
    "Score-CAM for the top-k: pytorch-grad-cam's ScoreCAM (once per set of targets) vs fastcam (one set of masked forwards)"
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    cb = GradCAMCallback(k=k)
    learn.add_cb(cb); quiet_validate(learn); learn.remove_cb(cb)
    model,x = learn.model.eval(),cb.inputs.as_subclass(torch.Tensor)
    def theirs(t):
        with ScoreCAM(model=model, target_layers=[model[0]]) as c:
            return c(input_tensor=x, targets=[ClassifierOutputTarget(int(i)) for i in t])
    def ours(*ts):
        acts,logits = forward_to_leaf(model, x, model[0])
        return replay_maps(Replay(acts, logits, model, x), dict(enumerate(ts)), ['scorecam'])
    with tqdm_off():
        one_theirs,one_ours = timed(lambda: theirs(cb.cam_actual_for)),timed(lambda: ours(cb.cam_actual_for))
        two_theirs = timed(lambda: (theirs(cb.cam_actual_for), theirs(cb.cam_pred_for)))
        two_ours = timed(lambda: ours(cb.cam_actual_for, cb.cam_pred_for))
    return dict(one_theirs=one_theirs, one_ours=one_ours, two_theirs=two_theirs, two_ours=two_ours)

class tqdm_off:
    "Silence pytorch-grad-cam's per-batch tqdm bars"
    def __enter__(self):
        import tqdm, functools
        self.orig = tqdm.tqdm
        tqdm.tqdm = functools.partial(self.orig, disable=True)
    def __exit__(self, *a):
        import tqdm
        tqdm.tqdm = self.orig

def core_rows(name, learn, reps)->list:
    "Rows 1-3 and 5 for one model"
    rows = overhead_rows(name, learn, reps)
    for k in (9, 64):
        h = time_to_heatmaps(learn, k, reps)
        rows.append((name, f'2. top-{k} heatmaps after validation: fastai v1 loop / fastcam', f"{h['fastai_v1_s']:.2f} s / {h['fastcam_s']*1000:.1f} ms", f"{h['speedup_vs_v1']:.0f}x faster", '>= 20x'))
        rows.append((name, f'2. top-{k} heatmaps after validation: pytorch-grad-cam / fastcam', f"{h['pytorch_grad_cam_s']:.2f} s / {h['fastcam_s']*1000:.1f} ms", f"{h['speedup_vs_pgc']:.0f}x faster", '>= 20x'))
    for k in (9, 64):
        c = cam_vs_forward(learn, k, reps)
        rows.append((name, f'3. grad_cam on {k} images / one forward of them', f"{c['grad_cam_s']*1000:.1f} ms / {c['forward_s']*1000:.1f} ms", f"{c['grad_cam_over_forward']:.2f}x", 'report'))
        rows.append((name, f'3. head replay, 2 Grad-CAMs of {k} / one forward (head alone: {c["head_forward_s"]*1000:.2f} ms)', f"{c['replay_s']*1000:.2f} ms / {c['forward_s']*1000:.1f} ms", f"{c['replay_two_cams_over_forward']:.3f}x", 'close to head'))
    g = agreement(learn)
    rows.append((name, f"5. fastcam vs pytorch-grad-cam, min-max normalized at layer resolution ({g['items']} items)", 'max abs diff', f"{g['max_abs_diff']:.1e}", 'agree'))
    return rows

# ---------------------------------------------------------------- 8. faithfulness scores
def loop_scores(model, x, maps, t, steps):
    "Deletion, insertion, average drop and increase in confidence one image and one step at a time: the same images as `faithfulness`"
    (H,W),base = x.shape[-2:],baseline_image(x, 'blur')
    prob = lambda img,c: F.softmax(model(img[None]), 1)[0, c]
    with torch.no_grad():
        for m,mp in maps.items():
            up = upsample_maps(mp, (H, W))
            for i in range(len(x)):
                order = up[i].flatten().argsort(descending=True, stable=True)
                for insert in (False, True):
                    for k in torch.linspace(0, H*W, steps+1).round().long():
                        sel = torch.zeros(H*W, dtype=torch.bool); sel[order[:k]] = True
                        sel = sel.view(1, H, W)
                        prob(torch.where(sel, x[i], base[i]) if insert else torch.where(sel, base[i], x[i]), t[i])
                prob(x[i], t[i]); prob(x[i]*up[i], t[i])

def scoring_speed(learn, k=9, steps=20):
    "Scores of every method's maps for the top-k: batched / a loop per image and step; confidence change: ours / pytorch-grad-cam's"
    from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
    cb = GradCAMCallback(k=k, methods=list(cam_methods))
    learn.add_cb(cb); quiet_validate(learn); learn.remove_cb(cb)
    model,x,t = learn.model.eval(),cb.inputs.as_subclass(torch.Tensor),cb.cam_actual_for
    maps = {m: v['actual'] for m,v in cb.maps.items()}
    metrics = ['deletion', 'insertion', 'avg_drop', 'increase']
    ours,loop = timed(lambda: faithfulness(model, x, maps, t, metrics, steps)),timed(lambda: loop_scores(model, x, maps, t, steps))
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in t]
    ups = {m: upsample_maps(v, x.shape[-2:]).numpy() for m,v in maps.items()}
    theirs = lambda: [CamMultImageConfidenceChange()(x, u, targets, model) for u in ups.values()]
    mine = lambda: [confidence_change(model, x, v, t) for v in maps.values()]
    c = interleaved_min(dict(theirs=theirs, ours=mine), 5)
    return dict(methods=len(maps), ours_s=ours, loop_s=loop, conf_theirs_s=c['theirs'], conf_ours_s=c['ours'])

# ---------------------------------------------------------------- 10. filter patterns
def patterns_speed(learn, n=64, steps=10, size=64):
    "filter_patterns for `n` channels of a stage in one batch / the same optimization one channel at a time"
    model,layer = learn.model,learn.model[0][4]        # ResNet-18's layer1: 64 channels
    batch = timed(lambda: filter_patterns(model, layer, range(n), size=size, steps=steps))
    loop = timed(lambda: [filter_patterns(model, layer, [c], size=size, steps=steps) for c in range(n)])
    return dict(batch_s=batch, loop_s=loop, n=n, steps=steps, size=size)

# ---------------------------------------------------------------- 11-13. the layer explained, and the method picked
def layer_setup(n_train=3000, n_valid=500, epochs=8, arch='resnet'):
    "A ResNet-18 (or the demo's digit CNN) trained on the 64-pixel digit scenes, well enough that its maps can be scored"
    set_seed(0)
    dls = digit_dls(n_train=n_train, n_valid=n_valid, seed=0, bs=64)
    set_seed(0)
    if arch=='resnet': learn = vision_learner(dls, resnet18, pretrained=False, n_in=1, metrics=accuracy)
    else: learn = Learner(dls, digit_cnn(dls.c), metrics=accuracy)
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(epochs, 1e-2)
    return ('ResNet-18, 64 px' if arch=='resnet' else 'digit CNN, 64 px'), learn

def layer_rows(name, learn, layers:dict)->list:
    "11. Pointing game of Grad-CAM, Grad-CAM++ and LayerCAM at each of `layers`, on the correctly classified validation items"
    from fastcam.demo import layer_pointing
    df = layer_pointing(learn, learn.dls.valid, layers)
    acc = float(learn.validate()[1]) if learn.metrics else float('nan')
    rows = []
    for (lname,path,size),g in df.groupby(['layer', 'path', 'map'], sort=False):
        vals = ', '.join(f"{cam_methods[m].title} {v:.3f}" for m,v in zip(g.method, g.pointing))
        rows.append((name, f"11. pointing game at {lname} = {path} ({size} maps), {int(g.n.iloc[0])} correct items (accuracy {acc:.3f})", vals, '-', 'report'))
    return rows

def finer_layer_cost(learn, reps)->dict:
    "12. The callback's own time when it explains the picked finer layer (the kept activations replayed through the stages after it) / when it explains model[0] (a head replay)"
    picked = validation_overhead(learn, reps, TimedGradCAM(k=9))
    body = validation_overhead(learn, reps, TimedGradCAM(k=9, layer=learn.model[0]))
    return dict(picked=picked, body=body)

def auto_cost(learn, reps)->dict:
    "13. method='auto' (rank_methods on the probes the callback kept) / validate()"
    cb = GradCAMCallback(k=9)
    learn.add_cb(cb); quiet_validate(learn)
    interp = cb.interpretation()
    off = min(timed(lambda: quiet_validate(learn)) for _ in range(reps))
    rank = min(timed(lambda: interp.rank_methods()) for _ in range(max(1, reps//2)))
    r = interp.rank_methods()
    learn.remove_cb(cb)
    return dict(validate_s=off, rank_s=rank, n=int(r.n.iloc[0]), best=r.index[0])

def layers_table(quick:bool, reps:int)->list:
    rows = []
    name,learn = layer_setup(*((1000, 250, 3) if quick else (3000, 500, 15)), arch='cnn')
    rows += layer_rows(name, learn, {'model[0] (picked)': learn.model[0], 'a finer stage': learn.model[0][1]})
    a = auto_cost(learn, reps)
    rows.append((name, f"13. method='auto': rank_methods on {a['n']} probe items / validate() ({len(learn.dls.valid_ds)} items); picked {a['best']}", f"{a['rank_s']:.2f} s / {a['validate_s']:.2f} s", f"{a['rank_s']/a['validate_s']:.2f}x", 'report'))
    name,learn = layer_setup(*((1000, 250, 2) if quick else (3000, 500, 8)))
    body = learn.model[0]
    rows += layer_rows(name, learn, {'model[0]': body, 'one stage earlier': body[6], 'the picked layer': pick_layer(learn.model, learn.dls.one_batch()[0][:1])})
    c = finer_layer_cost(learn, reps)
    for k,what in (("picked", "the picked layer model[0][5] (8x8): replay of the stages after it"), ('body', 'model[0] (2x2): head replay')):
        v = c[k]
        rows.append((name, f"12. (validate() + time spent in the callback) / validate(), explaining {what}", f"{v['own_s']*1000:.0f} ms / {v['without_s']:.2f} s", f"{v['own_ratio']:.3f}x", '<= 1.05x'))
    a = auto_cost(learn, reps)
    rows.append((name, f"13. method='auto': rank_methods on {a['n']} probe items / validate() ({len(learn.dls.valid_ds)} items); picked {a['best']}", f"{a['rank_s']:.2f} s / {a['validate_s']:.2f} s", f"{a['rank_s']/a['validate_s']:.2f}x", 'report'))
    return rows

def overhead_rows(name, learn, reps)->list:
    "Rows 1 and 9 only: the callback's cost in validate(), without and with the history"
    rows = []
    v = validation_overhead(learn, reps)
    rows.append((name, f"1. validate() with / without callback ({len(learn.dls.valid_ds)} items; runs without it vary by {v['spread']:.0%})", f"{v['with_s']:.2f} s / {v['without_s']:.2f} s", f"{v['ratio']:.3f}x", '<= 1.02x'))
    rows.append((name, f'1. (validate() + time spent in the callback) / validate()', f"{v['own_s']*1000:.0f} ms / {v['without_s']:.2f} s", f"{v['own_ratio']:.3f}x", '<= 1.02x'))
    n_valid = len(learn.dls.valid_ds)
    v = validation_overhead(learn, reps, RecordingGradCAM(k=9, track=list(range(0, n_valid, n_valid//9))[:9]))
    rows.append((name, f"9. validate() recorded in history, 9 tracked items, with / without callback", f"{v['with_s']:.2f} s / {v['without_s']:.2f} s", f"{v['ratio']:.3f}x", '<= 1.02x'))
    rows.append((name, f"9. (validate() + time spent in the callback, history and 9 tracked items) / validate()", f"{v['own_s']*1000:.0f} ms / {v['without_s']:.2f} s", f"{v['own_ratio']:.3f}x", '<= 1.02x'))
    rows.append((name, f"9. history held after 50 epochs (top-9 + 9 tracked items, maps of 2 methods x 3 targets, every item's loss)", f"{v['history_mb']:.2f} MB", '-', 'O(epochs x (k + n))'))
    return rows

# ---------------------------------------------------------------- the table
def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--quick', action='store_true', help="smaller sets and fewer repeats")
    p.add_argument('--only', choices=['digits', 'resnet', 'memory', 'methods', 'features', 'overhead', 'layers'],
                   help="run one part only ('methods': rows 6-8, 'features': row 10, 'overhead': rows 1 and 9, 'layers': rows 11-13)")
    p.add_argument('--child-memory', nargs=2, type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child_memory:
        print(json.dumps(peak_rss_child(*a.child_memory))); return
    torch.set_num_threads(os.cpu_count())
    n_digits,n_resnet,reps = (1000, 256, 3) if a.quick else (4000, 1000, 7)
    print(f"fastcam benchmarks - {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{'quick' if a.quick else 'full'} run\n")
    rows = []
    setups = dict(digits=lambda: digit_setup(n_digits), resnet=lambda: resnet_setup(n_resnet, 96 if a.quick else 128))
    if a.only=='overhead':
        for f in setups.values(): rows += overhead_rows(*f(), reps)
    if a.only in (None, 'layers'): rows += layers_table(a.quick, reps)
    if a.only in ('overhead', 'layers'): setups = {}
    for name,learn in (f() for n,f in setups.items() if a.only in (None, n, 'methods')):
        if a.only != 'methods': rows += core_rows(name, learn, reps)
        mr = methods_replay(learn, 9, reps)
        rows.append((name, f"6. top-9 replay (actual, predicted, contrast): all 5 gradient methods / Grad-CAM alone", f"{mr['all_s']*1000:.2f} ms / {mr['gradcam_s']*1000:.2f} ms", f"{mr['ratio']:.2f}x", '<= 1.2x'))
        rows.append((name, f"6. the callback's work after validation (replay, maps, capture): all 5 gradient methods / Grad-CAM alone", f"{mr['after_all_s']*1000:.2f} ms / {mr['after_one_s']*1000:.2f} ms", f"{mr['after_ratio']:.2f}x", '<= 1.2x'))
        sc = scorecam_speed(learn, 9)
        rows.append((name, "7. Score-CAM, top-9, one class each: pytorch-grad-cam / fastcam", f"{sc['one_theirs']:.2f} s / {sc['one_ours']:.2f} s", f"{sc['one_theirs']/sc['one_ours']:.2f}x faster", '>= 3x'))
        rows.append((name, "7. Score-CAM, top-9, actual and predicted class: pytorch-grad-cam (2 runs) / fastcam (1 run)", f"{sc['two_theirs']:.2f} s / {sc['two_ours']:.2f} s", f"{sc['two_theirs']/sc['two_ours']:.2f}x faster", '>= 3x'))
        fs = scoring_speed(learn, 9)
        rows.append((name, f"8. deletion, insertion, avg drop, increase for the top-9 x {fs['methods']} methods (20 steps): loop per image and step / batched", f"{fs['loop_s']:.2f} s / {fs['ours_s']:.2f} s", f"{fs['loop_s']/fs['ours_s']:.2f}x faster", 'report'))
        rows.append((name, f"8. confidence change (image x map) for the top-9 x {fs['methods']} methods: pytorch-grad-cam's CamMultImageConfidenceChange / fastcam", f"{fs['conf_theirs_s']*1000:.1f} ms / {fs['conf_ours_s']*1000:.1f} ms", f"{fs['conf_theirs_s']/fs['conf_ours_s']:.2f}x faster", 'report'))
    if a.only in (None, 'features') and setups:
        name,learn = resnet_setup(256, 64)
        fp = patterns_speed(learn, steps=5 if a.quick else 10)
        rows.append((name, f"10. filter_patterns, {fp['n']} channels of layer1 at {fp['size']} px, {fp['steps']} steps: one channel at a time / one batch", f"{fp['loop_s']:.2f} s / {fp['batch_s']:.2f} s", f"{fp['loop_s']/fp['batch_s']:.2f}x faster", 'report'))
    sizes = (2000, 20000) if not a.quick else (1000, 4000)
    m = memory(sizes) if a.only in (None, 'memory') and setups else None
    if m:
        for key,what in (('held', "peak of the callback's own tensors during validate()"),
                         ('heap', "peak heap in use (mallinfo2) during validate(), with minus without callback, median of 3"),
                         ('rss', "peak RSS rise during validate(), with minus without callback, median of 3 (allocator noise +-20 MB)")):
            d = m[key]
            rows.append(('digit CNN, 64 px', f"4. {what}: {sizes[0]} / {sizes[1]} items",
                         f"{d[sizes[0]]:.2f} MB / {d[sizes[1]]:.2f} MB", f"{d[sizes[1]]-d[sizes[0]]:+.2f} MB", 'within 10 MB'))
    w = [max(len(str(r[i])) for r in rows) for i in range(5)]
    head = ('model', 'measurement', 'measured', 'ratio', 'target')
    w = [max(wi, len(h)) for wi,h in zip(w, head)]
    line = lambda r: '| ' + ' | '.join(str(c).ljust(wi) for c,wi in zip(r, w)) + ' |'
    print(line(head)); print('|' + '|'.join('-'*(wi+2) for wi in w) + '|')
    for r in rows: print(line(r))

if __name__ == '__main__': main()
