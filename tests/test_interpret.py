import pytest, torch, matplotlib.pyplot as plt
import fastcore.test as fct
from fastai.vision.all import ClassificationInterpretation
from fastcam.all import *
from fastcam.interpret import top_loss_items
from conftest import hooks_on

@pytest.fixture(scope='module')
def interp(trained): return trained.grad_cam.interpretation()

def captions(fig, n): return [ax.get_title() for ax in fig.axes[:n]]

def test_captions_show_the_probability_of_the_actual_class(trained, interp):
    fig = interp.plot_top_losses_cam(k=6)
    assert fig._suptitle.get_text().startswith('Predicted/Actual/Loss/Probability of the actual class\n')   # says whose probability
    cb,vocab = trained.grad_cam,trained.dls.vocab
    with torch.no_grad(): probs = torch.softmax(trained.model.eval()(cb.inputs[:6].as_subclass(torch.Tensor)), 1)
    for cap,p,t,l in zip(captions(fig, 6), probs, cb.targs[:6], cb.losses[:6]):
        pred,actual,loss,p_actual = cap.split(' / ')[0].split('/') + cap.split(' / ')[1:]
        assert actual == vocab[int(t)] and pred == vocab[int(p.argmax())]
        assert loss == f"{float(l):.2f}" and p_actual == fmt_prob(float(p[int(t)]))
        fct.test_close(float(p_actual), float(p[int(t)]), eps=0.051*float(p[int(t)]))   # two significant digits
    assert any(float(c.split(' / ')[-1]) < 0.5 for c in captions(fig, 6))   # not the max probability
    plt.close(fig)

@pytest.mark.parametrize('heatmap,n_axes', [('gradcam', 4), ('mean', 4), ('both', 8)])
@pytest.mark.parametrize('cam_for', ['actual', 'predicted'])
def test_every_heatmap_choice_draws(interp, heatmap, n_axes, cam_for):
    fig = interp.plot_top_losses_cam(k=4, heatmap=heatmap, cam_for=cam_for)
    drawn = [ax for ax in fig.axes if ax.get_images()]
    assert len(drawn) == n_axes and all(len(ax.get_images()) == 2 for ax in drawn)   # image + heatmap
    heat = drawn[0].get_images()[1]
    assert heat.get_alpha() == 0.6 and heat.get_cmap().name == 'magma' and heat.get_interpolation() == 'bilinear'
    plt.close(fig)

def test_the_heatmap_drawn_is_the_chosen_one(trained, interp):
    cb = trained.grad_cam
    for cam_for,maps in (('actual', cb.cam_actual), ('predicted', cb.cam_pred)):
        fig = interp.plot_top_losses_cam(k=3, cam_for=cam_for)
        for ax,m in zip(fig.axes, maps): fct.test_close(torch.tensor(ax.get_images()[1].get_array()), normalize_map(m), eps=1e-6)
        plt.close(fig)

def test_from_learner_uses_the_capture_and_computing_agrees(trained, interp, monkeypatch):
    fresh = ClassificationInterpretation.from_learner(trained)
    captured = top_loss_items(fresh, 5)
    fct.test_close(captured['cam_actual'], trained.grad_cam.cam_actual[:5])
    computed = top_loss_items(fresh, 5, layer=trained.model[0])     # forces the batched computation
    for n in ('cam_actual', 'cam_pred', 'mean_maps', 'probs', 'losses'): fct.test_close(computed[n], captured[n], eps=1e-3)
    fct.test_eq(computed['idxs'].tolist(), captured['idxs'].tolist())
    smallest = interp.plot_top_losses_cam(k=3, largest=False)       # not captured: computed for just those 3
    assert len([ax for ax in smallest.axes if ax.get_images()]) == 3
    plt.close('all')
    assert not hooks_on(trained.model)

def test_top_losses_table(trained, interp):
    df = interp.top_losses_table(5)
    fct.test_eq(list(df.columns), ['index', 'item', 'predicted', 'actual', 'loss', 'p_actual'])
    cb = trained.grad_cam
    fct.test_eq(df['index'].tolist(), cb.idxs[:5].tolist())
    fct.test_close(torch.tensor(df.loss.values), cb.losses[:5], eps=1e-5)
    fct.test_eq(df.actual.tolist(), [trained.dls.vocab[int(t)] for t in cb.targs[:5]])
    assert df['item'].map(lambda p: str(p).endswith('.png')).all()
    assert (df.loss.diff().dropna() <= 0).all()

def test_fastai_plot_top_losses_still_works(interp):
    interp.plot_top_losses(3)
    plt.close('all')

def test_bad_choices_say_what_to_pass(interp):
    with pytest.raises(ValueError, match="'gradcam', 'mean', 'both'"): interp.plot_top_losses_cam(heatmap='cam')
    with pytest.raises(ValueError, match="'actual', 'predicted'"): interp.plot_top_losses_cam(cam_for='pred')
    with pytest.raises(ValueError, match='positive int'): interp.plot_top_losses_cam(k=0)
