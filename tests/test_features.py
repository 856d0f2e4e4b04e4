"Issue 15: every channel of every stage for one image, and filter patterns found for many channels in one batch"
import pytest, torch, torch.nn as nn
import fastcore.test as fct
import matplotlib.pyplot as plt
from fastai.vision.all import vision_learner, resnet18, Resize, set_seed
from fastcam.all import *
from conftest import digits_learner, hooks_on

@pytest.fixture(scope='module')
def resnet_learn():
    dls = digit_dls(n_train=64, n_valid=32, seed=0, bs=16)
    set_seed(0)
    return vision_learner(dls, resnet18, pretrained=False, n_in=1)

def grids(fig):
    "Each layer's grid of a `plot_activations` figure: (title, [channel images])"
    return [(sf._suptitle.get_text(), [ax.get_images()[0].get_array().data for ax in sf.axes if ax.get_images()])
            for sf in fig.subfigs if sf._suptitle is not None and sf.axes and len(sf.axes)>1]

def test_plot_activations_shows_every_stage_normalized_per_channel(trained):
    interp = trained.grad_cam.interpretation()
    fig = interp.plot_activations(0, max_channels=20)
    gs = grids(fig)
    body = trained.model[0]
    fct.test_eq(len(gs), len(body))                                  # one grid per stage of model[0]
    idx = int(interp.top_losses(1)[1][0])
    x,_ = items_batch(interp, [idx])
    want = {}
    hs = [m.register_forward_hook(lambda m,i,o,j=j: want.__setitem__(j, o.detach().float())) for j,m in enumerate(body)]
    trained.model.eval()
    with torch.no_grad(): trained.model(x)
    for h in hs: h.remove()
    for j,(title,imgs) in enumerate(gs):
        c = want[j].shape[1]
        assert title.startswith(f"0.{j} (ConvLayer): {tuple(want[j].shape[1:])}")
        fct.test_eq(len(imgs), min(c, 20))
        if c>20: assert f"the first 20 of {c} channels" in title
        for k,img in enumerate(imgs):
            fct.test_close(torch.tensor(img), normalize_channels(want[j][0, k:k+1])[0], eps=1e-5)
    caption = fig.subfigs[0]._suptitle.get_text()
    assert caption.startswith(f"item {idx}: ") and f"/ {float(interp.losses[idx]):.2f} /" in caption
    plt.close(fig)
    assert not hooks_on(trained.model)

def test_plot_activations_any_item_or_image_and_errors(trained):
    interp = trained.grad_cam.interpretation()
    fig = interp.plot_activations(idx=3, layers=[trained.model[0][0], trained.model[0][4]])
    gs = grids(fig)
    fct.test_eq(len(gs), 2); assert gs[1][0].startswith('0.4 (ConvLayer): (128, 8, 8), the first 32 of 128')
    assert fig.subfigs[0]._suptitle.get_text().startswith('item 3: ')
    plt.close(fig)
    x,_ = items_batch(interp, [5])
    fig = interp.plot_activations(x=x[0], max_channels=4); fct.test_eq(len(grids(fig)), 5); plt.close(fig)
    with pytest.raises(ValueError, match='rank of a top-loss item'): interp.plot_activations(10_000)
    with pytest.raises(ValueError, match='dataset index'): interp.plot_activations(idx=-1)
    with pytest.raises(ValueError, match='not a module of this model'): interp.plot_activations(layers=[nn.Conv2d(1, 1, 1)])

def test_normalize_channels_keeps_a_dead_channel_blank():
    a = torch.stack([torch.zeros(5, 5), torch.randn(5, 5)])
    n = normalize_channels(a)
    fct.test_eq(n[0].abs().max().item(), 0.)
    fct.test_close(n[1].mean(), torch.tensor(128/255), eps=0.02)     # centred on mid-grey
    assert n[1].min() >= 0 and n[1].max() <= 1

def test_plot_activations_on_a_resnet(resnet_learn):
    from fastai.interpret import ClassificationInterpretation
    interp = ClassificationInterpretation.from_learner(resnet_learn)
    fig = interp.plot_activations(1, max_channels=8)
    titles = [t for t,_ in grids(fig)]
    fct.test_eq(len(titles), len(resnet_learn.model[0]))             # conv, bn, relu, maxpool, layer1..4
    assert titles[-1].startswith('0.7 (Sequential): (512, 2, 2)')
    plt.close(fig)

def model_state(model):
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            [None if p.grad is None else p.grad.clone() for p in model.parameters()])

@pytest.mark.parametrize('which', ['digits', 'resnet'])
def test_filter_patterns_batch_equals_one_at_a_time_and_leaves_the_model_alone(which, trained, resnet_learn):
    model = trained.model if which=='digits' else resnet_learn.model
    layer = model[0][1] if which=='digits' else model[0][4]
    model.train()
    params = list(model.parameters())
    params[0].requires_grad_(False)
    params[-1].grad = torch.ones_like(params[-1])
    before, rng = model_state(model), torch.get_rng_state()
    try:
        chans = [0, 3, 7, 12]
        p = filter_patterns(model, layer, chans, size=32, steps=3)
        fct.test_eq(p.shape, (4, 1, 32, 32))
        one = torch.cat([filter_patterns(model, layer, [c], size=32, steps=3) for c in chans])
        fct.test_close(p, one, eps=1e-5)    # the same optimization (over many steps, ReLU thresholds amplify float rounding)
        # without jitter, each pattern raises its channel's mean activation above the starting noise's (a dead one stays 0)
        p = filter_patterns(model, layer, chans, size=32, steps=8, jitter=0)
        start = filter_patterns(model, layer, chans, size=32, steps=0)
        with evaluating(model), torch.no_grad():
            act = lambda x: forward_to(model, layer, x)[torch.arange(4), torch.tensor(chans)].mean((1, 2))
            a,b = act(p),act(start)
            assert ((a>b) | ((a==0) & (b==0))).all() and (a>b).sum()>=2
        after = model_state(model)
        fct.test_eq(after[:2], before[:2])
        assert all((a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))
                   for a,b in zip(after[2], before[2]))
        assert torch.equal(after[2][-1], torch.ones_like(params[-1]))
        assert torch.equal(torch.get_rng_state(), rng) and not hooks_on(model)
    finally:
        params[0].requires_grad_(True); params[-1].grad = None; model.eval()

def test_filter_pattern_errors_and_plot(trained):
    model = trained.model
    with pytest.raises(ValueError, match=r'\[0, 16\) for this layer \(16 channels\)'): filter_patterns(model, model[0][0], [3, 16], steps=1)
    with pytest.raises(ValueError, match='not a module of this model'): filter_patterns(model, nn.Conv2d(1, 1, 1), [0])
    fig = plot_filter_patterns(model, model[0][0], channels=range(6), size=24, steps=3, ncols=3)
    shown = [ax for ax in fig.axes if ax.get_images()]
    fct.test_eq(len(shown), 6); fct.test_eq([ax.get_title() for ax in shown], [f'channel {c}' for c in range(6)])
    img = shown[0].get_images()[0].get_array()
    assert img.shape==(24, 24) and float(img.std())>0
    plt.close(fig)
