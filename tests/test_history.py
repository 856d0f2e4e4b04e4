"Issue 11: per-epoch history, tracked items, history_table, plot_cam_history, TensorBoard"
import copy, warnings
import pytest, torch, torch.nn as nn
import fastcore.test as fct
from fastai.vision.all import Callback, ClassificationInterpretation, load_learner
from fastai.callback.tensorboard import TensorBoardCallback
from fastcam.all import *
from fastcam.interpret import items_batch, compute_maps
from conftest import digits_learner, fit_quietly, hooks_on

class Snapshots(Callback):
    "The model's weights at the end of every epoch of a fit"
    order = 90
    def __init__(self): self.states,self._in_fit = [],False
    def before_train(self): self._in_fit = True
    def after_epoch(self):
        if self._in_fit: self.states.append(copy.deepcopy(self.learn.model.state_dict()))
        self._in_fit = False

@pytest.fixture(scope='module')
def history_run():
    "Three epochs with the default tracking (the first pass's top-5), and the weights after each epoch"
    snaps = Snapshots()
    learn = fit_quietly(digits_learner(cbs=[GradCAMCallback(k=5), snaps]), epochs=3)
    return learn, snaps.states[-3:]

def at_epoch(learn, state):
    "A `ClassificationInterpretation` of the model with `state` loaded (fastai's own second pass)"
    learn.model.load_state_dict(state)
    return ClassificationInterpretation.from_learner(learn)

def test_every_fit_pass_is_recorded_and_equals_fastai_at_that_epoch(history_run):
    learn, states = history_run
    cb = learn.grad_cam
    fct.test_eq([r['epoch'] for r in cb.history], [0, 1, 2])
    saved = {n: v.clone() for n,v in learn.model.state_dict().items()}
    try:
        for rec,state in zip(cb.history, states):
            interp = at_epoch(learn, state)
            losses,idxs = interp.top_losses(5)
            fct.test_eq(rec['top']['idxs'].tolist(), idxs.tolist())
            fct.test_close(rec['top']['losses'], losses, eps=1e-4)
            # tracked: the first pass's top-5, recorded at every pass with fastai's loss at that epoch
            tr = rec['tracked']
            fct.test_eq(tr['idxs'].tolist(), sorted(cb.history[0]['top']['idxs'].tolist()))
            fct.test_close(tr['losses'], interp.losses[tr['idxs']], eps=1e-4)
            # and the maps are those of the model at that epoch
            x,targs = items_batch(interp, tr['idxs'])
            m = compute_maps(learn, x, targs)
            fct.test_close(tr['maps']['gradcam']['predicted'], m['cam_pred'], eps=1e-4)
            fct.test_close(tr['maps']['mean']['actual'], m['mean_maps'], eps=1e-4)
            fct.test_eq(tr['decoded'].tolist(), m['decoded'].tolist())
    finally: learn.model.load_state_dict(saved)
    assert not hooks_on(learn.model)

def test_explicit_track_records_those_items_at_every_epoch():
    snaps = Snapshots()
    track = [0, 7, 50, 95]
    learn = fit_quietly(digits_learner(cbs=[GradCAMCallback(k=3, track=track), snaps]), epochs=2)
    cb = learn.grad_cam
    for rec,state in zip(cb.history, snaps.states[-2:]):
        fct.test_eq(rec['tracked']['idxs'].tolist(), track)
        interp = at_epoch(learn, state)
        fct.test_close(rec['tracked']['losses'], interp.losses[track], eps=1e-4)
        fct.test_eq(len(rec['top']['idxs']), 3)

def test_validate_is_not_an_epoch_and_later_fits_continue_the_numbering():
    learn = fit_quietly(digits_learner(cbs=GradCAMCallback(k=4)), epochs=2)
    cb = learn.grad_cam
    with learn.no_bar(): learn.validate()
    fct.test_eq(len(cb.history), 2)
    first_tracked = cb.tracked_idxs
    fit_quietly(learn, epochs=1)
    fct.test_eq([r['epoch'] for r in cb.history], [0, 1, 2])
    fct.test_eq(cb.tracked_idxs, first_tracked)
    fct.test_eq(cb.history[-1]['tracked']['idxs'].tolist(), first_tracked)
    cb.clear_history(); fct.test_eq(cb.history, [])
    fit_quietly(learn, epochs=1)
    fct.test_eq([r['epoch'] for r in cb.history], [0])
    fct.test_eq(cb.tracked_idxs, sorted(cb.history[0]['top']['idxs'].tolist()))

def test_history_table(history_run):
    learn, _ = history_run
    cb = learn.grad_cam
    df = cb.history_table()
    fct.test_eq(list(df.columns), ['epoch', 'index', 'predicted', 'actual', 'loss', 'p_actual', 'in_top_k', 'tracked'])
    vocab = learn.dls.vocab
    for rec in cb.history:
        rows = df[df.epoch==rec['epoch']]
        fct.test_eq(int(rows.in_top_k.sum()), 5)
        fct.test_eq(sorted(rows[rows.tracked]['index'].tolist()), cb.tracked_idxs)
        top = rows[rows.in_top_k]
        fct.test_eq(top['index'].tolist(), rec['top']['idxs'].tolist())
        fct.test_close(torch.tensor(top['loss'].tolist()), rec['top']['losses'], eps=1e-6)
        fct.test_eq(top['actual'].tolist(), [vocab[int(t)] for t in rec['top']['targs']])
        p = rec['top']['probs'].gather(1, rec['top']['targs'][:, None].long())[:, 0]
        fct.test_close(torch.tensor(top['p_actual'].tolist()), p, eps=1e-6)
    # every item appears once per epoch
    assert not df.duplicated(['epoch', 'index']).any()

def fake_history(cb, passes):
    "Give `cb` a hand-made history: `passes` is a list of (top idxs, tracked {idx: correct})"
    def part(idxs, correct):
        n = len(idxs)
        targs = torch.zeros(n, dtype=torch.long)
        return dict(idxs=torch.tensor(idxs), losses=torch.arange(n, 0, -1).float(), targs=targs,
                    decoded=torch.tensor([0 if c else 1 for c in correct]), probs=torch.full((n, 2), 0.5),
                    cam_actual_for=targs, cam_pred_for=targs, maps={'gradcam': {'actual': torch.zeros(n, 2, 2)}})
    cb.history = [dict(epoch=e, n=100, top=part(top, [False]*len(top)), tracked=part(list(tr), list(tr.values())))
                  for e,(top,tr) in enumerate(passes)]

def test_stubborn_and_fixed_items():
    cb = GradCAMCallback(k=3)
    fake_history(cb, [([5, 9, 2], {2: False, 5: False, 9: True}),
                      ([9, 5, 7], {2: False, 5: True, 9: True}),
                      ([7, 5, 9], {2: True, 5: True, 9: False})])
    fct.test_eq(cb.stubborn_items(), [5, 9])       # in every top-3, ordered by the last pass
    fct.test_eq(cb.fixed_items(), [2, 5])          # wrong at first, right at the end; 9 got worse
    with pytest.raises(ValueError, match='no history yet'): GradCAMCallback().stubborn_items()

def test_plot_cam_history(history_run):
    import matplotlib.pyplot as plt
    learn, _ = history_run
    cb = learn.grad_cam
    fig = cb.plot_cam_history()
    n,m = len(cb.tracked_idxs),len(cb.history)
    axs = [ax for ax in fig.axes if ax.get_images()]
    fct.test_eq(len(axs), n*m)
    titles = [ax.get_title() for ax in fig.axes]
    rec = cb.history[1]['tracked']
    vocab = learn.dls.vocab
    i = 0   # the first tracked item at epoch 1: prediction/actual/loss
    assert titles[1].startswith(f"{vocab[int(rec['decoded'][i])]}/{vocab[int(rec['targs'][i])]} / {float(rec['losses'][i]):.2f}")
    assert 'epoch 1' in ' '.join(t.get_text() for t in fig.axes[1].texts)
    plt.close(fig)
    # an item that is not tracked: drawn where it was in the top-k, and said so elsewhere
    other = next((i for r in cb.history for i in r['top']['idxs'].tolist() if i not in cb.tracked_idxs), None)
    if other is not None:
        fig = cb.plot_cam_history(items=[other], cam_for='predicted')
        texts = ' '.join(t.get_text() for ax in fig.axes for t in ax.texts)
        assert 'not recorded' in texts and 'in the top-k' in texts
        plt.close(fig)
    with pytest.raises(ValueError, match="methods=\\['layercam'\\]"): cb.plot_cam_history(method='layercam')
    with pytest.raises(ValueError, match='No recorded epoch'): cb.plot_cam_history(epochs=[7])

def test_bad_track_is_refused_before_any_training():
    with pytest.raises(ValueError, match='dataset indices'): GradCAMCallback(track='abc')
    with pytest.raises(ValueError, match='dataset indices'): GradCAMCallback(track=[-1])
    with pytest.raises(ValueError, match='keep_history=True'): GradCAMCallback(track=[1], keep_history=False)
    learn = digits_learner(cbs=GradCAMCallback(track=[3, 10_000]))
    before = [p.detach().clone() for p in learn.model.parameters()]
    with pytest.raises(IndexError, match='validation set has 96 items'): fit_quietly(learn, epochs=1)
    assert all(torch.equal(a, b) for a,b in zip(before, learn.model.parameters()))
    assert not hooks_on(learn.model)
    with learn.no_bar(): learn.validate()       # not locked

def test_keep_history_off_and_export(tmp_path):
    learn = fit_quietly(digits_learner(cbs=GradCAMCallback(k=3, keep_history=False)), epochs=1)
    fct.test_eq(learn.grad_cam.history, [])
    assert learn.grad_cam.idxs is not None
    learn = fit_quietly(digits_learner(cbs=GradCAMCallback(k=3)), epochs=1)
    learn.export(tmp_path/'m.pkl')
    fct.test_eq(len(learn.grad_cam.history), 1)       # exporting keeps the user's history
    loaded = load_learner(tmp_path/'m.pkl')
    fct.test_eq(loaded.grad_cam.history, [])

def test_a_changed_validation_set_restarts_the_history():
    learn = fit_quietly(digits_learner(cbs=GradCAMCallback(k=3)), epochs=1)
    learn.dls = digits_learner(n_valid=64).dls
    with pytest.warns(UserWarning, match='validation set changed'): fit_quietly(learn, epochs=1)
    fct.test_eq(len(learn.grad_cam.history), 1)
    fct.test_eq(learn.grad_cam.history[0]['n'], 64)

def test_an_inplace_op_after_the_layer_still_gives_the_right_maps():
    "The layer's output is kept by reference; an in-place ReLU after it is detected and the maps re-run"
    learn = digits_learner(cbs=GradCAMCallback(k=4))
    learn.model[1].insert(0, nn.ReLU(inplace=True))
    learn.model[0][-1] = nn.Conv2d(64, 128, 3, padding=1)     # the body's output can be negative
    fit_quietly(learn, epochs=2)
    cb = learn.grad_cam
    assert cb._copy_acts        # the in-place op was seen: the output is copied from then on
    for rec in cb.history: assert rec["top"]["maps"]["gradcam"]["actual"].isfinite().all()
    interp = ClassificationInterpretation.from_learner(learn)
    x,targs = items_batch(interp, cb.idxs)
    fct.test_close(cb.cam_pred, compute_maps(learn, x, targs)['cam_pred'], eps=1e-4)
    fct.test_close(cb.mean_maps, compute_maps(learn, x, targs)['mean_maps'], eps=1e-4)

# ---------------------------------------------------------------- TensorBoard
def read_events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ea = EventAccumulator(str(folder), size_guidance={'images': 0, 'scalars': 0, 'tensors': 0})
    ea.Reload()
    return ea

def test_tensorboard_callback_gets_every_pass_and_the_history(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    learn = digits_learner(cbs=[GradCAMCallback(k=4), TensorBoardCallback(log_dir=tmp_path/'tb', trace_model=False, log_preds=False)])
    fit_quietly(learn, epochs=2)
    ea = read_events(tmp_path/'tb')
    tags = ea.Tags()
    assert 'fastcam/top_losses' in tags['images'] and 'fastcam/history' in tags['images']
    fct.test_eq([e.step for e in ea.Images('fastcam/top_losses')], [0, 1])
    img = ea.Images('fastcam/top_losses')[0]
    assert img.width>200 and img.height>200 and len(img.encoded_image_string)>5000
    cb = learn.grad_cam
    i = cb.tracked_idxs[0]
    got = [e.value for e in ea.Scalars(f'fastcam/tracked_loss/{i}')]
    fct.test_close(torch.tensor(got), torch.tensor([float(r['tracked']['losses'][0]) for r in cb.history]), eps=1e-5)
    assert 'train_loss' in tags['scalars']          # fastai's own logging is untouched
    assert not (tmp_path/'runs').exists()

def test_log_tensorboard_without_the_callback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    learn = fit_quietly(digits_learner(cbs=GradCAMCallback(k=3, log='tensorboard', log_dir=tmp_path/'tb')), epochs=1)
    ea = read_events(tmp_path/'tb')
    fct.test_eq(len(ea.Images('fastcam/history')), 1)
    # without TensorBoard asked for, nothing is written anywhere
    fit_quietly(digits_learner(cbs=GradCAMCallback(k=3)), epochs=1)
    assert not (tmp_path/'runs').exists()
    with pytest.raises(ValueError, match="'tensorboard'"): GradCAMCallback(log='wandb')
