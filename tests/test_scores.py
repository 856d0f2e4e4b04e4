"Can the user trust a heatmap? Faithfulness and sanity scores for every method (issue 10)."
import pytest, torch, torch.nn as nn, torch.nn.functional as F, matplotlib.pyplot as plt
import fastcore.test as fct
from fastai.vision.all import ClassificationInterpretation
from fastcam.all import *
from conftest import hooks_on

def items(learn, n=4):
    cb = learn.grad_cam
    return learn.model, cb.inputs[:n].as_subclass(torch.Tensor), cb.cam_pred_for[:n]

def model_state(model):
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            [None if p.grad is None else p.grad.clone() for p in model.parameters()], {k: v.clone() for k,v in model.state_dict().items()})

def test_batched_curves_are_those_of_a_loop_over_items_and_steps(trained):
    model,x,t = items(trained, 3)
    maps = cam(model, x, t, 'gradcam')
    for insert in (False, True):
        curves = perturbation_curves(model, x, maps, t, steps=5, baseline='blur', insertion=insert)
        base = baseline_image(x, 'blur')
        for i in range(3):
            order = upsample_maps(maps[i:i+1], (64, 64)).reshape(-1).argsort(descending=True, stable=True)
            for s,k in enumerate(torch.linspace(0, 64*64, 6).round().long()):
                sel = torch.zeros(64*64, dtype=torch.bool); sel[order[:k]] = True
                sel = sel.reshape(1, 64, 64)
                img = torch.where(sel, x[i], base[i]) if insert else torch.where(sel, base[i], x[i])
                with torch.no_grad(): p = F.softmax(model.eval()(img[None]), 1)[0, t[i]]
                fct.test_close(curves[i, s], p, eps=1e-5)
    fct.test_close(deletion(model, x, maps, t, steps=5), torch.trapezoid(perturbation_curves(model, x, maps, t, steps=5), dx=0.2, dim=1))

def test_scores_agree_with_pytorch_grad_cam_where_they_compute_the_same_thing(trained):
    from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
    model,x,t = items(trained, 6)
    maps = cam(model, x, t, 'gradcam')
    y,o = confidence_change(model, x, maps, t)
    theirs = CamMultImageConfidenceChange()(x, upsample_maps(maps, x.shape[-2:]).numpy(),
                                            [ClassifierOutputSoftmaxTarget(int(c)) for c in t], model.eval())
    fct.test_close(o - y, torch.from_numpy(theirs), eps=1e-5)
    fct.test_close(average_drop(model, x, maps, t), 100*(y - o).clamp(min=0)/y)
    fct.test_eq(increase_in_confidence(model, x, maps, t), (o > y).float())

def test_the_randomization_test_leaves_the_model_alone_and_baselines_do_not_change(trained):
    model,x,t = items(trained, 4)
    model.train(); model[0][1].eval()
    before = model_state(model)
    df = randomization_test(model, x, t, ['gradcam', 'random', 'gaussian'])
    after = model_state(model)
    assert before[:2] == after[:2]
    for a,b in zip(before[2], after[2]): assert (a is None and b is None) or torch.equal(a, b)
    for k in before[3]: assert torch.equal(before[3][k], after[3][k]), k
    assert not hooks_on(model)
    layers = cascade_layers(model)
    fct.test_eq(df.step.max(), len(layers))
    assert df.randomized.iloc[0] == f"down to {layers[0][0]}"                   # the head first
    mean = df.groupby(['method', 'step']).spearman.mean()
    assert (mean['random'] > 0.9999).all() and (mean['gaussian'] > 0.9999).all()    # a map that ignores the model
    assert mean['gradcam'].iloc[-1] < 0.9                                        # Grad-CAM depends on the weights
    model.eval()

@pytest.fixture(scope='module')
def scores(trained):
    return trained.grad_cam.interpretation().cam_scores(k=3, steps=10)

def test_cam_scores_one_row_per_item_and_method(trained, scores):
    cb = trained.grad_cam
    fct.test_eq(len(scores), 3*len(cam_methods))
    fct.test_eq(set(scores.method), set(cam_methods))
    fct.test_eq(list(scores.columns), ['index', 'method', 'deletion', 'beats_random', 'insertion', 'avg_drop', 'increase', 'randomization',
                                       'deletion_random', 'insertion_random', 'probability', 'measurable'])
    fct.test_eq(scores['index'].tolist()[:3], cb.idxs[:3].tolist())
    g = scores[scores.method == 'gradcam']
    model,x,t = trained.model,cb.inputs[:3],cb.cam_actual_for[:3]
    fct.test_close(torch.tensor(g.deletion.values), deletion(model, x, cb.cam_actual[:3], t, steps=10), eps=1e-5)
    r = scores[scores.method == 'random']
    assert not r.beats_random.any()                                              # the random map never beats itself
    assert (scores.avg_drop.between(0, 100)).all() and set(scores.increase) <= {0., 1.}
    for m in score_metrics: assert better[m] in ('lower', 'higher')

def test_bad_metric_cam_for_and_baseline_say_what_to_pass(trained):
    interp = trained.grad_cam.interpretation()
    with pytest.raises(ValueError, match="unknown metric.*'deletion'"): interp.cam_scores(k=2, metrics=['auc'])
    with pytest.raises(ValueError, match="cam_for='actual', 'predicted' or 'auto'"): interp.cam_scores(k=2, cam_for='contrast')
    model,x,t = items(trained, 2)
    with pytest.raises(ValueError, match="'blur', 'mean', 'zeros'"): deletion(model, x, cam(model, x, t), t, baseline='black')
    for b in ('mean', 'zeros', torch.zeros(1, 64, 64)): assert deletion(model, x, cam(model, x, t), t, steps=4, baseline=b).shape == (2,)

def test_tiles_show_their_score_and_a_map_no_better_than_random_is_flagged(trained):
    interp = trained.grad_cam.interpretation()
    fig = interp.plot_top_losses_cam(k=2, score='deletion')
    texts = [t.get_text() for ax in fig.axes[:2] for t in ax.texts]
    assert all('deletion AUC' in t for t in texts if t.startswith('Grad-CAM')), texts
    plt.close(fig)
    fig = interp.plot_top_losses_cam(k=2, method='random', score='deletion', cam_for='predicted')
    for ax in fig.axes[:2]: assert any('no better than random' in t.get_text() or 'not measurable' in t.get_text() for t in ax.texts)
    plt.close(fig)
    fig = interp.plot_top_losses_cam(k=2, score='insertion')
    assert any('insertion AUC' in t.get_text() for t in fig.axes[0].texts)
    plt.close(fig)
    with pytest.raises(ValueError, match="`score` must be one of 'deletion'"): interp.plot_top_losses_cam(score='auc')

def test_a_faithful_map_scores_better_than_the_wrong_one():
    "A model whose class c is the mean of channel c, one channel per half of the image"
    class Halves(nn.Module):
        def forward(self, x):
            left = torch.zeros_like(x); left[..., :x.shape[-1]//2] = 1
            return torch.cat([x*left, x*(1-left)], 1)
    toy = nn.Sequential(Halves(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2))
    with torch.no_grad(): toy[3].weight.copy_(torch.eye(2)*4); toy[3].bias.zero_()
    x = torch.rand(5, 1, 8, 8) + 0.5
    good = cam(toy, x, 0)
    df = faithfulness(toy, x, {'good': good, 'wrong': good.flip(-1)}, 0, ['deletion', 'insertion', 'avg_drop'], baseline='zeros')
    m = df.groupby('method').mean()
    assert m.deletion['good'] < m.deletion['wrong'] and m.insertion['good'] > m.insertion['wrong']
    assert m.avg_drop['good'] < m.avg_drop['wrong'] and df[df.method == 'good'].beats_random.all()
