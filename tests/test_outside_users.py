"What outside users hit (issue 8): plain PyTorch losses, no locked learner, early errors, k > n, float32 maps, figures."
import subprocess, sys, threading, pytest, torch, torch.nn as nn, torch.nn.functional as F, matplotlib.pyplot as plt
import fastcore.test as fct
from matplotlib.patches import FancyBboxPatch
from fastai.vision.all import (vision_learner, resnet18, Learner, accuracy, accuracy_multi, Callback, Resize,
                               ClassificationInterpretation, set_seed)
from fastcam.all import *
from conftest import digits_learner, fit_quietly, hooks_on

def finishes(f, timeout=120):
    "Whether `f()` returns (or raises) within `timeout` seconds, instead of hanging"
    t = threading.Thread(target=lambda: f(), daemon=True)
    t.start(); t.join(timeout)
    return not t.is_alive()

class CountSteps(Callback):
    "Counts optimizer steps: how much training was spent"
    steps = 0
    def after_step(self): self.steps += 1

def cosine(a, b):
    "Cosine similarity of two maps; two all-zero maps agree"
    if not a.any() and not b.any(): return 1.
    return F.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0).item()

# ---------------------------------------------------------------- plain PyTorch losses
@pytest.fixture(scope='module')
def ce_learner():
    "A `vision_learner` trained with PyTorch's own `nn.CrossEntropyLoss()` (no `activation`, no `decodes`)"
    dls = digit_dls(n_train=64, n_valid=40, seed=0, bs=16, item_tfms=Resize(32))
    set_seed(0)
    learn = vision_learner(dls, resnet18, pretrained=False, n_in=1, loss_func=nn.CrossEntropyLoss(), metrics=accuracy,
                           cbs=GradCAMCallback(k=5))
    return fit_quietly(learn, epochs=1, lr=1e-3)

def softmax_of(learn, x):
    with torch.no_grad(): return torch.softmax(learn.model.eval()(x.as_subclass(torch.Tensor)), 1)

def test_cross_entropy_loss_gives_softmax_probabilities_and_argmax_predictions(ce_learner):
    cb = ce_learner.grad_cam
    probs = softmax_of(ce_learner, cb.inputs)
    fct.test_close(cb.probs, probs, eps=1e-4)
    fct.test_eq(cb.decoded, probs.argmax(1))
    fct.test_close(cb.cam_pred, grad_cam(ce_learner.model, cb.inputs, probs.argmax(1), layer=cb.hooked_layer), eps=1e-3)
    fig = cb.interpretation().plot_top_losses_cam(k=5)
    vocab = ce_learner.dls.vocab
    for ax,p,t in zip(fig.axes, probs, cb.targs):
        pred,actual = ax.get_title().split(' / ')[0].split('/')
        assert pred == vocab[int(p.argmax())] and actual == vocab[int(t)]
        assert ax.get_title().split(' / ')[-1] == fmt_prob(float(p[int(t)]))
    plt.close(fig)

def test_cross_entropy_table_without_the_callback(ce_learner):
    with ce_learner.removed_cbs(ce_learner.grad_cam):
        interp = ClassificationInterpretation.from_learner(ce_learner)
        df = interp.top_losses_table(4)
    losses,idxs = interp.top_losses(4)
    fct.test_eq(df['index'].tolist(), idxs.tolist())
    x = ce_learner.grad_cam.inputs[:4]          # the same items, captured before
    fct.test_eq(df['index'].tolist(), ce_learner.grad_cam.idxs[:4].tolist())
    probs = softmax_of(ce_learner, x)
    fct.test_close(torch.tensor(df.p_actual.values), probs.gather(1, ce_learner.grad_cam.targs[:4, None].long())[:, 0], eps=1e-4)
    fct.test_eq(df.predicted.tolist(), [ce_learner.dls.vocab[int(o)] for o in probs.argmax(1)])

def test_bce_with_logits_multilabel_gives_sigmoid_and_threshold():
    dls = digit_dls(n_train=128, n_valid=48, max_digits=2, seed=1, bs=32)
    set_seed(0)
    learn = fit_quietly(Learner(dls, digit_cnn(10), loss_func=nn.BCEWithLogitsLoss(), metrics=accuracy_multi,
                                cbs=GradCAMCallback(k=4)), epochs=1)
    cb = learn.grad_cam
    with torch.no_grad(): probs = torch.sigmoid(learn.model.eval()(cb.inputs.as_subclass(torch.Tensor)))
    fct.test_close(cb.probs, probs, eps=1e-4)
    fct.test_eq(cb.decoded.bool(), probs > 0.5)
    df = cb.interpretation().top_losses_table(4)
    fct.test_close(torch.tensor(df.p_label.values), probs.gather(1, cb.cam_actual_for[:, None])[:, 0], eps=1e-4)
    plt.close(cb.interpretation().plot_top_losses_cam(k=2))

def test_a_loss_fastcam_cannot_read_fails_before_training():
    steps = CountSteps()
    learn = digits_learner(cbs=[GradCAMCallback(), steps], n_train=64, n_valid=32)
    learn.loss_func = nn.MultiMarginLoss()
    with pytest.raises(TypeError, match="can't tell probabilities.*CrossEntropyLossFlat"): fit_quietly(learn, epochs=1)
    assert steps.steps == 0 and not hooks_on(learn.model)

# ---------------------------------------------------------------- no locked learner
class NotSequential(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1))
        self.fc = nn.Linear(16, 10)
    def forward(self, x): return self.fc(self.features(x).mean((2, 3)))

def test_an_error_inside_validate_does_not_lock_the_learner():
    dls = digit_dls(n_train=64, n_valid=32, seed=0, bs=16)
    learn = Learner(dls, NotSequential(), metrics=accuracy, cbs=GradCAMCallback(k=3))
    with pytest.raises(ValueError, match='has no `\\[0\\]`'): learn.validate()
    learn.grad_cam.layer = nn.Conv2d(1, 1, 1)                       # a module of another model
    with pytest.raises(ValueError, match='not a module of this model'): learn.validate()
    learn.grad_cam.layer = learn.model.fc                           # not an (n, c, h, w) map
    with pytest.raises(ValueError, match=r'\(n, c, h, w\)'): learn.validate()
    learn.grad_cam.layer = learn.model.features                     # what the message says to do
    assert finishes(learn.validate), "validate() hangs after fastcam raised"
    assert learn.grad_cam.idxs is not None and len(learn.grad_cam.idxs) == 3
    assert finishes(lambda: learn.get_preds()), "get_preds() hangs after fastcam raised"
    assert finishes(lambda: learn.predict(dls.valid.items[0])), "predict() hangs after fastcam raised"
    assert not hooks_on(learn.model)

# ---------------------------------------------------------------- fail before training
def test_a_layer_that_is_not_a_module_fails_at_once():
    with pytest.raises(TypeError, match='must be a module of the model'): GradCAMCallback(layer='0')
    with pytest.raises(TypeError, match='must be a module of the model'): GradCAMCallback(layer=0)

@pytest.mark.parametrize('which', ['other model', 'head'])
def test_a_wrong_layer_fails_before_any_training(which):
    steps = CountSteps()
    learn = digits_learner(cbs=[GradCAMCallback(), steps], n_train=64, n_valid=32)
    learn.grad_cam.layer = digit_cnn(10)[0] if which=='other model' else learn.model[1]
    with pytest.raises(ValueError, match='not a module of this model' if which=='other model' else r'\(n, c, h, w\)'):
        fit_quietly(learn, epochs=2)
    assert steps.steps == 0 and learn.recorder.values == [] and not hooks_on(learn.model)
    learn.grad_cam.layer = learn.model[0]
    assert finishes(lambda: fit_quietly(learn, epochs=1)) and steps.steps > 0 and learn.grad_cam.idxs is not None

# ---------------------------------------------------------------- k larger than the validation set
def test_k_larger_than_the_validation_set_shows_every_item():
    learn = fit_quietly(digits_learner(cbs=GradCAMCallback(k=4), n_train=64, n_valid=12), epochs=1)
    for interp in (learn.grad_cam.interpretation(), ClassificationInterpretation.from_learner(learn)):
        df = interp.top_losses_table(50)
        assert len(df) == 12 and sorted(df['index']) == list(range(12))
        fig = interp.plot_top_losses_cam(k=50)
        assert len([ax for ax in fig.axes if ax.get_images()]) == 12
        plt.close(fig)

# ---------------------------------------------------------------- float32 maps under mixed precision
class CPUBFloat16(Callback):
    "bfloat16 autocast on the CPU for each batch, as fastai's `MixedPrecision` does on CUDA"
    order = 10
    def before_batch(self): self.ac = torch.autocast('cpu', dtype=torch.bfloat16); self.ac.__enter__()
    def after_loss(self): self.ac.__exit__(None, None, None)

def test_maps_are_float32_maps_under_bfloat16_autocast(trained):
    learn = digits_learner(cbs=[GradCAMCallback(k=9), CPUBFloat16()])
    learn.model.load_state_dict(trained.model.state_dict())
    learn.validate()
    cb = learn.grad_cam
    x = cb.inputs
    for got,want in ((cb.cam_actual, grad_cam(learn.model, x, cb.cam_actual_for)),
                     (cb.cam_pred, grad_cam(learn.model, x, cb.cam_pred_for)), (cb.mean_maps, mean_activation(learn.model, x))):
        assert got.dtype == torch.float32
        for a,b in zip(got, want): assert cosine(a, b) >= 0.999
    assert (cb.cam_pred.flatten(1) > 0).any(1).all()                    # the maps compared are not all zero
    with torch.autocast('cpu', dtype=torch.bfloat16): under = grad_cam(learn.model, x, cb.cam_pred_for)
    for a,b in zip(under, grad_cam(learn.model, x, cb.cam_pred_for)): assert cosine(a, b) >= 0.999

# ---------------------------------------------------------------- pictures that explain themselves
@pytest.fixture(scope='module')
def interp(trained): return trained.grad_cam.interpretation()

def panel_texts(ax): return [t.get_text() for t in ax.texts]

@pytest.mark.parametrize('heatmap,cam_for', [('gradcam', 'actual'), ('gradcam', 'predicted'), ('mean', 'actual'), ('both', 'predicted')])
def test_every_panel_says_what_it_shows(trained, interp, heatmap, cam_for):
    cb,vocab = trained.grad_cam,trained.dls.vocab
    fig = interp.plot_top_losses_cam(k=3, heatmap=heatmap, cam_for=cam_for)
    drawn = [ax for ax in fig.axes if ax.get_images()]
    classes = cb.cam_actual_for if cam_for == 'actual' else cb.cam_pred_for
    want = {'gradcam': [f"Grad-CAM: {vocab[int(c)]} ({cam_for})" for c in classes[:3]], 'mean': ['mean activation']*3}
    kinds = ['gradcam', 'mean'] if heatmap == 'both' else [heatmap]
    for i in range(3):
        for j,kind in enumerate(kinds):
            texts = panel_texts(drawn[len(kinds)*i+j])
            assert any(t.startswith(want[kind][i]) for t in texts), (texts, want[kind][i])
    if heatmap == 'both':                                            # one box around each item's two panels
        boxes = [a for a in fig.artists if isinstance(a, FancyBboxPatch)]
        assert len(boxes) == 3
        for b,(a1,a2) in zip(boxes, zip(drawn[::2], drawn[1::2])):
            bx = b.get_bbox()
            for ax in (a1, a2):
                p = ax.get_position()
                assert bx.x0 <= p.x0 and p.x1 <= bx.x1 and bx.y0 <= p.y0 and p.y1 <= bx.y1
    plt.close(fig)

def test_heatmap_is_on_exactly_the_image_pixels(interp):
    fig = interp.plot_top_losses_cam(k=2)
    for ax in fig.axes[:2]:
        img,heat = ax.get_images()
        assert heat.get_extent() == img.get_extent()
        assert ax.get_xlim() == (-0.5, 63.5)        # no strip of colour beyond the image
    plt.close(fig)

def test_small_probabilities_show_significant_digits(interp):
    fig = interp.plot_top_losses_cam(k=9)
    t = top_loss_items(interp, 9)
    for ax,p,c in zip(fig.axes, t['probs'], t['targs']):
        shown,p = ax.get_title().split(' / ')[-1],float(p[int(c)])
        assert shown != '0.00' and abs(float(shown)-p) <= 0.05*p, (shown, p)
    plt.close(fig)
    assert fmt_prob(3.14e-4) == '3.1e-04' and fmt_prob(0.8712) == '0.87'

def test_the_figure_says_how_maps_are_scaled_shared_scale_and_colorbar(interp):
    fig = interp.plot_top_losses_cam(k=4)
    assert any('each map scaled to its own [0, 1]' in t.get_text() for t in fig.texts)
    plt.close(fig)
    fig = interp.plot_top_losses_cam(k=4, cam_for='predicted', scale='shared', colorbar=True)
    assert any('shared scale' in t.get_text() for t in fig.texts)
    drawn = [ax.get_images()[1].get_array() for ax in fig.axes if ax.get_images()]
    maxima = sorted(float(a.max()) for a in drawn)
    assert maxima[-1] == pytest.approx(1.0) and maxima[0] < 0.999          # weaker maps look weaker
    assert len(fig.axes) == 5 and 'shared scale' in fig.axes[-1].get_ylabel()   # the colour bar
    plt.close(fig)
    with pytest.raises(ValueError, match="'each', 'shared'"): interp.plot_top_losses_cam(scale='own')

def test_an_all_zero_map_says_so(trained, interp):
    cb = trained.grad_cam
    saved = cb.cam_pred[0].clone()
    cb.cam_pred[0] = 0
    try:
        fig = interp.plot_top_losses_cam(k=2, cam_for='predicted')
        assert any('all zero' in t for t in panel_texts(fig.axes[0])) and not any('all zero' in t for t in panel_texts(fig.axes[1]))
        plt.close(fig)
    finally: cb.cam_pred[0] = saved

# ---------------------------------------------------------------- importing changes nothing global
def test_importing_fastcam_changes_no_fastai_default():
    code = '''
import sys, fastai.learner
from fastai.torch_core import defaults
before = {k: list(v) if isinstance(v, list) else v for k,v in vars(defaults).items()}
from fastcam.all import *
after = {k: list(v) if isinstance(v, list) else v for k,v in vars(defaults).items()}
assert before == after, (before, after)
assert 'fastai.callback.progress' not in sys.modules
print('unchanged')
'''
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert r.returncode == 0 and 'unchanged' in r.stdout, r.stdout + r.stderr
