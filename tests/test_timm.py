"Issue 12: timm backbones and vision transformers: tokens and channels-last outputs become (n, c, h, w) maps at the capture"
import pytest, torch, torch.nn as nn
import fastcore.test as fct
import matplotlib.pyplot as plt
timm = pytest.importorskip('timm', reason='timm is an optional extra: pip install "fastcam[timm]" (the dev extra has it)')
from pytorch_grad_cam import GradCAM, HiResCAM, LayerCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from fastai.vision.all import vision_learner, Learner, set_seed, accuracy, CrossEntropyLossFlat
from fastcam.all import *
from conftest import fit_quietly, hooks_on

PGC = dict(gradcam=GradCAM, hirescam=HiResCAM, layercam=LayerCAM)
ARCHS = {'convnext': ('convnext_atto', {}), 'efficientnet': ('efficientnet_b0', {}),
         'vit': ('vit_tiny_patch16_224', dict(img_size=64)), 'deit': ('deit_tiny_distilled_patch16_224', dict(img_size=64))}

@pytest.fixture(scope='module')
def dls(): return digit_dls(n_train=64, n_valid=32, seed=0, bs=16)

@pytest.fixture(scope='module')
def swin():
    "timm's Swin at 64 px (fastai's `vision_learner` can't train it: see the notebook)"
    set_seed(0)
    return timm.create_model('swin_tiny_patch4_window7_224', pretrained=False, num_classes=10, in_chans=1, img_size=64, window_size=4)

def theirs(method, model, layer, x, t, size, reshape):
    "pytorch-grad-cam's map with the same layer and reshape, at the layer's resolution, min-max normalized by it"
    with PGC[method](model=model, target_layers=[layer], reshape_transform=reshape) as c:
        c.get_target_width_height = lambda inp: size
        return torch.from_numpy(c(input_tensor=x, targets=[ClassifierOutputTarget(int(i)) for i in t]))

def normalized(maps): return torch.stack([normalize_map(m) for m in maps])

def check_agreement(model, layer, x, reshape=None):
    model.eval()
    with torch.no_grad(): t = model(x).argmax(1)
    with layer_output(layer) as o, torch.no_grad(): model(x)
    r = resolve_reshape(model, layer, o.acts, reshape)
    nonzero = 0
    for method in PGC:
        ours = cam(model, x, t, method, layer=layer, reshape=reshape)
        nonzero += int(ours.flatten(1).any(1).sum())
        fct.test_close(normalized(ours), theirs(method, model, layer, x, t, ours.shape[:0:-1], r), eps=1e-4)
    assert nonzero >= len(x)          # the comparison is not between empty maps
    return r

@pytest.mark.parametrize('name', list(ARCHS))
def test_vision_learner_with_a_timm_backbone(name, dls):
    arch,kw = ARCHS[name]
    set_seed(0)
    learn = vision_learner(dls, arch, pretrained=False, n_in=1, cbs=GradCAMCallback(k=4, methods=['layercam']), **kw)
    fit_quietly(learn, epochs=1, lr=1e-3)
    cb = learn.grad_cam
    body = learn.model[0]
    transformer = name in ('vit', 'deit')
    # layer=None: for a transformer (whose timm body pools) its last block's tokens; for a CNN, whose body gives 2x2
    # maps at 64 px, its last stage with at least 7x7 cells
    if transformer: assert cb.hooked_layer is body.model.blocks[-1].norm1
    else: assert cb.hooked_layer is not body and any(m is cb.hooked_layer for m in body.modules())
    if transformer: fct.test_eq(cb.cam_pred.shape, (4, 4, 4))
    else: assert cb.cam_pred.shape[0] == 4 and cb.cam_pred.shape[1]*cb.cam_pred.shape[2] >= 49
    interp = cb.interpretation()
    fig = interp.plot_top_losses_cam(k=4, heatmap='both'); plt.close(fig)
    fig = interp.plot_cam_methods(k=2, methods=['gradcam', 'layercam']); plt.close(fig)
    # the capture's maps are the standalone math's on the same items
    x = cb.inputs.as_subclass(torch.Tensor)
    fct.test_close(cb.cam_pred, grad_cam(learn.model, x, cb.cam_pred_for, layer=cb.hooked_layer), eps=1e-4)
    # and, with random weights, pytorch-grad-cam's given the same reshape
    set_seed(1)
    fresh = vision_learner(dls, arch, pretrained=False, n_in=1, **kw).model
    r = check_agreement(fresh, default_layer(fresh), x)
    if transformer:
        fct.test_eq(r.prefix, 2 if name=='deit' else 1)     # class token, and DeiT's distillation token
        fct.test_eq(r.grid, (4, 4))
    else: assert r is None
    assert not hooks_on(learn.model)

def test_swin_channels_last_with_learner_and_layer(dls, swin):
    "Swin's blocks output (n, h, w, c): permuted at the capture; fastai's vision_learner head can't take its NHWC body"
    with pytest.raises(RuntimeError): 
        learn = vision_learner(dls, 'swin_tiny_patch4_window7_224', pretrained=False, n_in=1, img_size=64, window_size=4)
        learn.model(dls.one_batch()[0])
    layer = swin.layers[-1].blocks[-1].norm1
    learn = Learner(dls, swin, loss_func=CrossEntropyLossFlat(), cbs=GradCAMCallback(k=4, layer=layer))
    with learn.no_bar(): learn.validate()
    cb = learn.grad_cam
    fct.test_eq(cb.cam_pred.shape, (4, 2, 2))
    r = check_agreement(swin, layer, cb.inputs.as_subclass(torch.Tensor))
    assert r is channels_last
    fig = cb.interpretation().plot_top_losses_cam(k=4); plt.close(fig)

class Tokens(nn.Module):
    "A tiny model whose body outputs (n, 16, c) patch tokens with no prefix, and nothing that says so"
    def __init__(self):
        super().__init__()
        self.body = nn.Conv2d(1, 8, 16, stride=16)
        self.head = nn.Linear(8, 10)
    def forward(self, x): return self.head(self.tokens(x).mean(1))
    def tokens(self, x): return self.body(x).flatten(2).transpose(1, 2)

class TokenBody(nn.Module):
    def __init__(self, m): super().__init__(); self.m = m
    def forward(self, x): return self.m.tokens(x)

def test_an_ambiguous_layout_asks_for_reshape_and_reshape_works(dls):
    m = Tokens()
    model = nn.Sequential(TokenBody(m), nn.Sequential(LambdaMean(), m.head))
    x = dls.one_batch()[0][:4].as_subclass(torch.Tensor)
    with pytest.raises(ValueError, match=r'Pass `reshape=`.*TokenGrid'): grad_cam(model, x, 0)
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), cbs=GradCAMCallback(k=4))
    with pytest.raises(ValueError, match='Pass `reshape=`'): fit_quietly(learn, epochs=1)
    with pytest.raises(ValueError, match='Pass `reshape=`'), learn.no_bar(): learn.validate()   # the same, and not locked
    learn.grad_cam.reshape = TokenGrid(prefix=0)
    with learn.no_bar(): learn.validate()
    fct.test_eq(learn.grad_cam.cam_pred.shape, (4, 4, 4))
    check_agreement(model, model[0], x, TokenGrid(prefix=0))
    fct.test_eq(grad_cam(model, x, 0, reshape=TokenGrid(0)).shape, (4, 4, 4))

class LambdaMean(nn.Module):
    def forward(self, t): return t.mean(1)
