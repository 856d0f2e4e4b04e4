"The views people reach for elsewhere (issue 28): AblationCAM, Guided Grad-CAM and Integrated Gradients in the one registry."
import numpy as np, pytest, torch, torch.nn as nn, torch.nn.functional as F, matplotlib.pyplot as plt
import fastcore.test as fct
from fastai.vision.all import vision_learner, resnet18, set_seed, TensorImage
from fastcam.all import *
from conftest import digits_learner, hooks_on

def minmax_up(m, size):
    "pytorch-grad-cam's normalisation: each map to [0, 1], then resized (bilinear, pixel centres) to the input"
    m = F.interpolate(m.float()[:, None], size=size, mode='bilinear', align_corners=False)[:, 0] if m.shape[-2:] != size else m.float()
    m = m - m.amin((1, 2), keepdim=True)
    return m/(1e-7 + m.amax((1, 2), keepdim=True))

def state(model):
    return dict(modes=[m.training for m in model.modules()], rg=[p.requires_grad for p in model.parameters()],
                grads=[None if p.grad is None else p.grad.clone() for p in model.parameters()])

def untouched(model, before):
    "Nothing left behind: no hook, `.grad` as it was, every module's mode and `requires_grad` as they were"
    assert hooks_on(model) == []
    now = state(model)
    assert all((a is None and b is None) or (a is not None and b is not None and torch.equal(a, b)) for a,b in zip(before['grads'], now['grads']))
    assert now['modes'] == before['modes'] and now['rg'] == before['rg']

@pytest.fixture(scope='module')
def resnet():
    set_seed(0)
    learn = vision_learner(digits_learner().dls, resnet18, pretrained=False, n_in=1)
    return learn.model

@pytest.mark.parametrize('arch', ['digit CNN, model[0]', 'ResNet-18, model[0][5]'])
def test_ablationcam_equals_pytorch_grad_cams(trained, resnet, arch):
    from pytorch_grad_cam import AblationCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    model,layer = (trained.model, trained.model[0]) if arch.startswith('digit') else (resnet, resnet[0][5])
    x,y = trained.dls.valid.one_batch()
    x,y = x[:6],y[:6]                                                   # fastai's TensorImage and TensorCategory
    model.eval(); model[0].train(); before = state(model)              # a mode of the user's own: given back
    ours = cam(model, x, y, 'ablationcam', layer)
    untouched(model, before)
    model.eval()
    theirs = AblationCAM(model, [layer])(input_tensor=plain(x), targets=[ClassifierOutputTarget(int(c)) for c in y])
    fct.test_close(minmax_up(ours, x.shape[-2:]), torch.tensor(theirs), eps=1e-4)

@pytest.mark.parametrize('method,captum_class', [('guided-gradcam', 'GuidedGradCam'), ('integrated-gradients', 'IntegratedGradients')])
def test_captum_views_equal_captums_own(trained, resnet, method, captum_class):
    import captum.attr as ca
    x,y = trained.dls.valid.one_batch()
    x,y = x[:4],y[:4]
    for model,layer in ((trained.model, trained.model[0]), (resnet, resnet[0][5])):    # fastai ConvLayers; torchvision's in-place ReLUs
        model.eval(); before = state(model)
        ours = cam(model, x, y, method, layer)
        untouched(model, before)
        assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU) and m in set(resnet.modules())) or model is trained.model
        c = getattr(ca, captum_class)
        theirs = (c(model, layer) if method=='guided-gradcam' else c(model)).attribute(plain(x), target=plain(y)).sum(1)
        fct.test_eq(ours.shape, (4, *x.shape[-2:]))                    # one value per input pixel
        fct.test_close(ours, theirs.detach(), eps=1e-4*float(theirs.abs().max()))

def test_the_new_methods_in_the_figure_the_report_the_scores_and_the_ranking(trained, tmp_path):
    learn = digits_learner(cbs=GradCAMCallback(k=3, methods=['ablationcam', 'guided-gradcam', 'integrated-gradients']))
    learn.model.load_state_dict(trained.model.state_dict())
    learn.validate()
    interp = learn.grad_cam.interpretation()
    new = ['ablationcam', 'guided-gradcam', 'integrated-gradients']
    fig = interp.plot_cam_methods(k=2, methods=['gradcam', *new])
    labels = [' '.join(t.get_text() for t in ax.texts) for ax in fig.axes if ax.get_images()]
    for title in ('AblationCAM', 'Guided Grad-CAM', 'Integrated Gradients'): assert any(l.startswith(title) for l in labels), labels
    signed = [ax.get_images()[-1] for ax in fig.axes if ax.get_images() and ax.texts and ax.texts[0].get_text().startswith('Integrated')]
    rgba = signed[0].get_array()
    assert rgba.ndim == 3 and rgba.shape[-1] == 4 and rgba.shape[:2] == (64, 64)   # drawn pixel by pixel, its own colours and opacity
    assert (rgba[..., 0] > rgba[..., 2]).any() and (rgba[..., 2] > rgba[..., 0]).any()   # red where positive, blue where negative
    assert 'red where it raises the score' in fig.texts[-1].get_text()
    plt.close(fig)
    page = interp.cam_report(tmp_path/'r.html', k=2, method='gradcam').read_text()
    for title in ('AblationCAM', 'Guided Grad-CAM', 'Integrated Gradients'): assert title in page
    scores = interp.cam_scores(k=2, methods=['gradcam', *new, 'random'], metrics=['deletion', 'insertion'], steps=5)
    assert set(new) <= set(scores.method) and scores.deletion.notna().all()
    before = state(learn.model)
    ranking = interp.rank_methods(steps=4)
    assert {'ablationcam', 'guided-gradcam', 'integrated-gradients'} <= set(ranking.index)
    untouched(learn.model, before)

def test_a_missing_captum_says_which_extra_to_install(monkeypatch):
    import builtins
    real = builtins.__import__
    def no_captum(name, *a, **k):
        if name.startswith('captum'): raise ImportError(name)
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, '__import__', no_captum)
    net = nn.Sequential(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()), nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)))
    with pytest.raises(ImportError, match=r'pip install "fastcam\[captum\]"'): cam(net, torch.rand(2, 1, 8, 8), 0, 'integrated-gradients')

# ---------------------------------------------------------------- a verdict needs a margin
class GoneAtOnce(nn.Module):
    "Class 0 while every pixel is still there (its logit follows the image's darkest pixel): any deletion removes it"
    def forward(self, x): return torch.stack([200*x.flatten(1).amin(1), torch.full((len(x),), 50.)], 1)

def test_no_verdict_when_any_deletion_removes_the_class():
    x = torch.rand(6, 1, 16, 16)*0.5 + 0.5
    model = GoneAtOnce()
    maps = {'a map': torch.rand(6, 4, 4, generator=torch.Generator().manual_seed(5))}
    df = faithfulness(model, x, maps, 0, ['deletion'], steps=20, baseline='zeros', show_progress=False)
    assert (df.probability > 0.9).all()                                   # the probability is high: the old rule measured it
    assert (df.deletion < 0.05).all() and (df.deletion_random < 0.05).all()
    assert not df.measurable.any() and df.beats_random.isna().all()       # two numbers near zero: no verdict

def test_a_faithful_map_still_beats_random_by_a_margin():
    class Halves(nn.Module):
        def forward(self, x): return torch.stack([8*x[..., :8].mean((1, 2, 3)), 8*x[..., 8:].mean((1, 2, 3))], 1)
    x = torch.rand(6, 1, 16, 16) + 0.5
    left = torch.zeros(6, 4, 4); left[..., :2] = 1
    df = faithfulness(Halves(), x, {'left': left, 'right': left.flip(-1)}, 0, ['deletion'], baseline='zeros', show_progress=False)
    assert df[df.method == 'left'].beats_random.all() and not df[df.method == 'right'].beats_random.any()
    assert df.measurable.all()
