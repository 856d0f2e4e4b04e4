import pytest, torch, torch.nn as nn, torch.nn.functional as F
import fastcore.test as fct
from fastcam.cam import grad_cam, grad_cams
from fastcam.replay import mean_activation, forward_to_leaf

def small_model(inplace=False):
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 8, 3, stride=2, padding=1))
    head = nn.Sequential(nn.ReLU(inplace=inplace), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(8, 4))
    return nn.Sequential(body, head)

def by_hand(model, x, targets):
    "Grad-CAM the textbook way: one image at a time, a retained layer output and a full `loss.backward()`"
    model = model.eval()
    res = []
    for xi,t in zip(x, targets):
        acts = model[0](xi[None]); acts.retain_grad()
        model[1](acts)[0, t].backward()
        w = acts.grad.mean((2, 3), keepdim=True)
        res.append(F.relu((w*acts).sum(1))[0].detach())
        model.zero_grad()
    return torch.stack(res)

def test_grad_cam_matches_the_formula_batched_and_per_item():
    model,x,t = small_model(),torch.randn(5, 3, 12, 12),[0, 3, 1, 1, 2]
    expected = by_hand(small_model(), x, t)
    fct.test_close(grad_cam(model, x, t), expected, eps=1e-5)
    for i in range(5): fct.test_close(grad_cam(model, x[i:i+1], t[i])[0], expected[i], eps=1e-5)
    assert expected.abs().sum() > 0

def test_mean_activation_is_the_channel_mean():
    model,x = small_model(),torch.randn(2, 3, 12, 12)
    with torch.no_grad(): expected = model.eval()[0](x).mean(1)
    fct.test_close(mean_activation(small_model(), x), expected, eps=1e-6)

class Halves(nn.Module):
    "Channel 0 holds the image's left half, channel 1 its right half"
    def forward(self, x):
        left = torch.zeros_like(x); left[..., :x.shape[-1]//2] = 1
        return torch.cat([x*left, x*(1-left)], 1)

def test_class_0_reads_left_class_1_reads_right():
    model = nn.Sequential(Halves(), nn.AdaptiveAvgPool2d(1), nn.Flatten())   # class c = mean of channel c
    x = torch.rand(3, 1, 10, 10) + 0.1
    left,right = grad_cam(model, x, 0),grad_cam(model, x, 1)
    assert (left[:, :, :5] > 0).all() and (left[:, :, 5:] == 0).all()
    assert (right[:, :, 5:] > 0).all() and (right[:, :, :5] == 0).all()

def model_state(model):
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            [None if p.grad is None else p.grad.clone() for p in model.parameters()],
            {k: v.clone() for k,v in model.state_dict().items()})

@pytest.mark.parametrize('inplace', [False, True])
def test_model_left_exactly_as_it_was(inplace):
    model = small_model(inplace).train()
    model[0][1].eval()                                    # a mixed train/eval state must survive
    for p in model[0].parameters(): p.requires_grad_(False)   # a frozen body
    model[1][-1].weight.grad = torch.ones_like(model[1][-1].weight)
    before = model_state(model)
    x = torch.randn(4, 3, 12, 12)
    with torch.no_grad(): cams = grad_cam(model, x, [0, 1, 2, 3])
    mean_activation(model, x)
    after = model_state(model)
    assert before[0] == after[0] and before[1] == after[1]
    for a,b in zip(before[2], after[2]): assert (a is None and b is None) or torch.equal(a, b)
    for k in before[3]: assert torch.equal(before[3][k], after[3][k]), k     # batch-norm statistics untouched
    assert not [h for m in model.modules() for h in m._forward_hooks.values()]
    fct.test_close(cams, by_hand(small_model(), x, [0, 1, 2, 3]), eps=1e-5)   # same weights, out-of-place ReLU

def test_fastai_tensor_subclasses_are_accepted():
    from fastai.torch_core import TensorImage, TensorCategory
    model,x = small_model(),torch.randn(2, 3, 12, 12)
    fct.test_close(grad_cam(model, TensorImage(x), TensorCategory([1, 2])), grad_cam(model, x, [1, 2]))

@pytest.mark.parametrize('targets,msg', [([0, 4], '[0, 4)'), ([0], 'one class index per item'), ([-1, 0], '[0, 4)'),
                                         (torch.tensor([0.5, 1.0]), 'class indices (ints)')])
def test_bad_targets_say_what_to_pass(targets, msg):
    with pytest.raises((ValueError, TypeError), match=pytest.importorskip('re').escape(msg)):
        grad_cam(small_model(), torch.randn(2, 3, 12, 12), targets)

def test_bad_layers_say_what_to_pass():
    with pytest.raises(ValueError, match='has no `\\[0\\]`'): grad_cam(nn.Linear(3, 2), torch.randn(2, 3), 0)
    model = small_model()
    with pytest.raises(ValueError, match=r'\(n, c, h, w\)'): grad_cam(model, torch.randn(2, 3, 12, 12), 0, layer=model[1][2])
    assert not model[1][2]._forward_hooks
