"Every CAM method from the one replay (issue 9): agreement with pytorch-grad-cam, contrast maps, plots, the callback."
import pytest, torch, torch.nn as nn, torch.nn.functional as F, matplotlib.pyplot as plt
import fastcore.test as fct
from fastai.vision.all import (vision_learner, resnet18, Resize, set_seed, accuracy, Learner, accuracy_multi,
                               ClassificationInterpretation)
from pytorch_grad_cam import GradCAM, HiResCAM, GradCAMPlusPlus, XGradCAM, LayerCAM, EigenCAM, ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection
from fastcam.all import *
from conftest import digits_learner, fit_quietly, hooks_on

PGC = dict(gradcam=GradCAM, hirescam=HiResCAM, xgradcam=XGradCAM, layercam=LayerCAM, eigencam=EigenCAM,
           **{'gradcam++': GradCAMPlusPlus}, scorecam=ScoreCAM)

@pytest.fixture(scope='module')
def resnet():
    "A `vision_learner` ResNet-18 (random init, one short epoch) on 64-pixel digit scenes: 2x2 maps at `model[0]`"
    dls = digit_dls(n_train=128, n_valid=32, seed=0, bs=32, item_tfms=Resize(64))
    set_seed(0)
    return fit_quietly(vision_learner(dls, resnet18, pretrained=False, n_in=1), epochs=1, lr=1e-3)

def setup(learn, n):
    model = learn.model.eval()
    x = learn.dls.valid.one_batch()[0][:n].as_subclass(torch.Tensor)
    with torch.no_grad(): t = model(x).argmax(1)
    return model, x, t

def theirs(method, model, x, t, size, **kw):
    "pytorch-grad-cam's map of the same name at the layer's resolution `size` (w, h), min-max normalized by it"
    with PGC[method](model=model, target_layers=[model[0]]) as c:
        c.get_target_width_height = lambda inp: size
        for k,v in kw.items(): setattr(c, k, v)
        return torch.from_numpy(c(input_tensor=x, targets=[ClassifierOutputTarget(int(i)) for i in t]))

def normalized(maps): return torch.stack([normalize_map(m) for m in maps]) if len(maps) else maps

@pytest.fixture(params=['trained', 'resnet'])
def learner(request): return request.getfixturevalue(request.param)

@pytest.mark.parametrize('method', ['gradcam', 'hirescam', 'xgradcam', 'layercam'])
def test_same_formula_as_pytorch_grad_cam(learner, method):
    model,x,t = setup(learner, 8)
    ours = cam(model, x, t, method)
    assert ours.any()
    fct.test_close(normalized(ours), theirs(method, model, x, t, ours.shape[:0:-1]), eps=1e-4)

def leaf_and_grads(model, x, t):
    acts,logits = forward_to_leaf(model, x, model[0])
    g = Replay(acts, logits).grads(F.one_hot(t, logits.shape[1]).float()[None])[0]
    return acts.detach().float(), g

def test_gradcam_pp_is_the_paper_formula_and_pytorch_grad_cam_adds_an_epsilon(learner):
    "pytorch-grad-cam adds 1e-6 to eq. 19's denominator; for small gradients that term dominates it"
    model,x,t = setup(learner, 8)
    ours = cam(model, x, t, 'gradcam++')
    a,g = leaf_and_grads(model, x, t)
    g2 = g**2
    den = 2*g2 + a.sum((2, 3), keepdim=True)*g2*g
    paper = F.relu(((torch.where(den != 0, g2/den, 0)*F.relu(g)).sum((2, 3), keepdim=True)*a).sum(1))
    fct.test_close(ours, paper, eps=1e-5)
    with_eps = F.relu(((torch.where(g != 0, g2/(den+1e-6), 0)*F.relu(g)).sum((2, 3), keepdim=True)*a).sum(1))
    fct.test_close(normalized(with_eps), theirs('gradcam++', model, x, t, ours.shape[:0:-1]), eps=1e-4)   # their formula
    assert (normalized(ours) - normalized(with_eps)).abs().max() > 1e-3                              # ... differs from the paper

def test_eigencam_is_the_first_principal_component_with_the_sign_of_the_mean_activation(learner):
    model,x,t = setup(learner, 8)
    ours = cam(model, x, t, 'eigencam')
    a,_ = leaf_and_grads(model, x, t)
    proj = torch.from_numpy(get_2d_projection(a.numpy()))           # pytorch-grad-cam's projection, sign arbitrary
    agree = (proj*a.mean(1)).sum((1, 2)) >= 0
    fct.test_close(normalized(ours), normalized(F.relu(torch.where(agree[:, None, None], proj, -proj))), eps=1e-4)
    th = theirs('eigencam', model, x, t, ours.shape[:0:-1])          # ReLU of whatever sign the SVD gave
    fct.test_close(normalized(ours)[agree], th[agree], eps=1e-4)
    fct.test_close(th[~agree], normalized(F.relu(proj[~agree])), eps=1e-4)   # where the SVD's sign disagrees ...
    for o,p in zip(normalized(ours)[~agree], th[~agree]): assert (o - p).abs().max() > 0.1       # ... the maps differ

def scorecam_reference(model, x, t, acts, align_corners=False, channel_softmax=False):
    "Score-CAM one channel at a time: the authors' code (`align_corners=False`, class probability), or pytorch-grad-cam's choices"
    maps = []
    for xi,ti,ai in zip(x, t, acts):
        w = torch.zeros(len(ai))
        for k,ak in enumerate(ai):
            if not channel_softmax and ak.max() == ak.min(): continue
            up = F.interpolate(ak[None, None], size=x.shape[-2:], mode='bilinear', align_corners=align_corners)
            up = (up - up.min())/(up.max() - up.min() + (1e-8 if channel_softmax else 0))
            with torch.no_grad(): out = model(xi[None]*up)[0]
            w[k] = out[ti] if channel_softmax else F.softmax(out, 0)[ti]
        if channel_softmax: w = F.softmax(w, 0)
        maps.append(F.relu((w[:, None, None]*ai).sum(0)))
    return torch.stack(maps)

def test_scorecam_is_the_authors_and_pytorch_grad_cam_softmaxes_logits_across_channels(learner):
    model,x,t = setup(learner, 2)
    ours = cam(model, x, t, 'scorecam')
    a,_ = leaf_and_grads(model, x, t)
    fct.test_close(normalized(ours), normalized(scorecam_reference(model, x, t, a)), eps=1e-4)
    th = theirs('scorecam', model, x, t, ours.shape[:0:-1], batch_size=64)
    fct.test_close(th, normalized(scorecam_reference(model, x, t, a, align_corners=True, channel_softmax=True)), eps=1e-4)

# ---------------------------------------------------------------- one replay, the callback, contrast
def test_cam_accepts_one_or_several_methods_and_says_which_exist(trained):
    model,x,t = setup(trained, 4)
    maps = cam(model, x, t, ['gradcam', 'layercam', 'mean'])
    fct.test_eq(set(maps), {'gradcam', 'layercam', 'mean'})
    fct.test_close(maps['gradcam'], grad_cam(model, x, t))
    fct.test_close(maps['mean'], mean_activation(model, x))
    with pytest.raises(ValueError, match="choose among 'mean', 'gradcam'"): cam(model, x, t, 'gradcampp')
    with pytest.raises(ValueError, match='unknown CAM method'): GradCAMCallback(methods=('gradcam', 'smoothgrad'))

def test_the_callback_computes_every_requested_method_in_the_replay(trained):
    methods = ('hirescam', 'gradcam++', 'xgradcam', 'layercam', 'eigencam', 'scorecam')
    learn = digits_learner(cbs=GradCAMCallback(k=5, methods=methods))
    learn.model.load_state_dict(trained.model.state_dict())
    learn.validate()
    cb = learn.grad_cam
    fct.test_eq(set(cb.maps), {'mean', 'gradcam', *methods})
    for m in cb.maps:
        for cam_for,targets in (('actual', cb.cam_actual_for), ('predicted', cb.cam_pred_for)):
            fct.test_close(cb.maps[m][cam_for], cam(learn.model, cb.inputs, targets, m), eps=1e-4)
    fct.test_close(cb.cam_actual, cb.maps['gradcam']['actual'])
    assert not hooks_on(learn.model)

def test_contrast_is_the_map_of_predicted_minus_actual_and_empty_when_right(trained):
    cb,model = trained.grad_cam,trained.model
    x = cb.inputs
    c = cb.probs.shape[1]
    w = F.one_hot(cb.cam_pred_for, c).float() - F.one_hot(cb.cam_actual_for, c).float()
    fct.test_close(cb.maps['gradcam']['contrast'], cam(model, x, w, 'gradcam'), eps=1e-4)
    wrong = cb.cam_pred_for != cb.cam_actual_for
    assert wrong.any() and cb.maps['gradcam']['contrast'][wrong].any()     # (one map may be empty: no positive evidence)
    assert not cb.maps['gradcam']['contrast'][~wrong].any()
    interp = ClassificationInterpretation.from_learner(trained)
    t = top_loss_items(interp, 5, largest=False)                     # the best items: correctly classified
    right = t['cam_pred_for'] == t['cam_actual_for']
    assert right.all() and not t['maps']['gradcam']['contrast'].any()
    fig = interp.plot_top_losses_cam(k=2, largest=False, cam_for='contrast')
    for ax in fig.axes[:2]:
        texts = [o.get_text() for o in ax.texts]
        assert any('contrast (correct)' in o for o in texts) and any('nothing to contrast' in o for o in texts), texts
    plt.close(fig)
    fig = trained.grad_cam.interpretation().plot_top_losses_cam(k=2, cam_for='contrast')
    vocab = trained.dls.vocab
    for ax,p,a in zip(fig.axes, cb.cam_pred_for, cb.cam_actual_for):
        want = f"Grad-CAM: {vocab[int(p)]} over {vocab[int(a)]}" if p != a else 'Grad-CAM: contrast (correct): all zero'
        assert want in [o.get_text() for o in ax.texts]
    plt.close(fig)

def test_contrast_is_refused_clearly_for_multilabel():
    dls = digit_dls(n_train=64, n_valid=32, max_digits=2, seed=1, bs=32)
    learn = fit_quietly(Learner(dls, digit_cnn(10), metrics=accuracy_multi, cbs=GradCAMCallback(k=3)), epochs=1)
    assert 'contrast' not in learn.grad_cam.maps['gradcam']
    with pytest.raises(ValueError, match="single-label.*cam_for='actual'"):
        learn.grad_cam.interpretation().plot_top_losses_cam(k=2, cam_for='contrast')

# ---------------------------------------------------------------- plots
def test_plot_top_losses_cam_with_another_method(trained):
    interp = trained.grad_cam.interpretation()
    fig = interp.plot_top_losses_cam(k=3, method='layercam')                 # not captured: computed for 3 items
    cb,vocab = trained.grad_cam,trained.dls.vocab
    want = cam(trained.model, cb.inputs[:3], cb.cam_actual_for[:3], 'layercam')
    for ax,m,c in zip(fig.axes, want, cb.cam_actual_for):
        fct.test_close(torch.tensor(ax.get_images()[1].get_array()), normalize_map(m), eps=1e-5)
        assert any(o.get_text().startswith(f"LayerCAM: {vocab[int(c)]} (actual)") for o in ax.texts)
    plt.close(fig)
    with pytest.raises(ValueError, match='unknown CAM method'): interp.plot_top_losses_cam(method='cam')

def test_plot_cam_methods_one_row_per_item_one_column_per_method(trained):
    interp = trained.grad_cam.interpretation()
    methods = ['mean', 'gradcam', 'hirescam', 'eigencam']
    fig = interp.plot_cam_methods(k=3, methods=methods, cam_for='predicted')
    drawn = [ax for ax in fig.axes if ax.get_images()]
    assert len(drawn) == 12
    cb,vocab = trained.grad_cam,trained.dls.vocab
    for i in range(3):
        row = drawn[4*i:4*i+4]
        assert row[0].get_title() == top_loss_caption(vocab, top_loss_items(interp, 3), i, 'predicted')
        labels = [ax.texts[-1].get_text() for ax in row]
        assert labels[0].startswith('mean activation') and labels[1].startswith(f"Grad-CAM: {vocab[int(cb.cam_pred_for[i])]} (predicted)")
        assert labels[2].startswith('HiResCAM') and labels[3].startswith('EigenCAM')
        fct.test_eq(len(set(round(ax.get_position().y0, 4) for ax in row)), 1)     # one row
    plt.close(fig)
