import pickle, io, warnings, pytest, torch
import fastcore.test as fct
from fastai.vision.all import ClassificationInterpretation, Callback, CancelFitException, load_learner
from fastcam.all import *
from conftest import digits_learner, fit_quietly, hooks_on

def test_top_k_agrees_with_fastai_from_learner(trained):
    cb = trained.grad_cam
    interp = ClassificationInterpretation.from_learner(trained)
    losses,idxs = interp.top_losses(9)
    fct.test_eq(cb.idxs.tolist(), idxs.tolist())
    fct.test_close(cb.losses, losses, eps=1e-4)
    fct.test_close(cb.interpretation().losses, interp.losses, eps=1e-4)
    assert cb.captured_dl.dataset is trained.dls.valid.dataset

def test_capture_holds_k_items_with_three_maps(trained):
    cb = trained.grad_cam
    assert len(cb.all_losses) == len(trained.dls.valid_ds)          # one float per item ...
    for n in ('idxs', 'losses', 'targs', 'decoded', 'probs', 'inputs', 'mean_maps', 'cam_actual', 'cam_pred'):
        assert len(getattr(cb, n)) == 9, n                            # ... and k of everything else
    fct.test_eq(cb.mean_maps.shape, (9, 8, 8))
    fct.test_close(cb.cam_actual, grad_cam(trained.model, cb.inputs, cb.targs), eps=1e-4)
    fct.test_close(cb.cam_pred, grad_cam(trained.model, cb.inputs, cb.decoded), eps=1e-4)
    fct.test_close(cb.mean_maps, mean_activation(trained.model, cb.inputs), eps=1e-4)
    fct.test_close(cb.probs.sum(1), torch.ones(9), eps=1e-5)

def test_the_rerun_path_for_other_layers_agrees(trained):
    learn = digits_learner(cbs=GradCAMCallback(k=4, layer=None))
    learn.model.load_state_dict(trained.model.state_dict())
    layer = learn.model[0][3]            # not the body: no head to replay, so the 4 inputs are re-run once
    learn.grad_cam.layer = layer
    learn.validate()
    cb = learn.grad_cam
    fct.test_eq(cb.cam_actual.shape, (4, 8, 8))
    fct.test_close(cb.cam_actual, grad_cam(learn.model, cb.inputs, cb.targs, layer=layer), eps=1e-4)
    assert not hooks_on(learn.model)

def test_no_hooks_after_fit_or_validate(trained):
    assert not hooks_on(trained.model)
    trained.validate()
    assert not hooks_on(trained.model)

class RaiseAt(Callback):
    "Raise `exc` at event `at` of the second validation batch"
    def __init__(self, exc, at='after_pred'): self.exc,self.at = exc,at
    def __getattr__(self, n):
        if n == self.at: return self._maybe_raise
        return super().__getattr__(n)
    def _maybe_raise(self):
        if not self.training and self.iter == 1: raise self.exc

@pytest.mark.parametrize('at', ['before_batch', 'after_pred', 'after_loss'])
def test_no_hook_left_after_an_exception_mid_validation(at):
    learn = digits_learner(cbs=GradCAMCallback())
    with pytest.raises(RuntimeError, match='boom'):
        with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=RaiseAt(RuntimeError('boom'), at))
    assert not hooks_on(learn.model)
    with pytest.raises(RuntimeError, match='boom'): learn.validate(cbs=RaiseAt(RuntimeError('boom'), at))
    assert not hooks_on(learn.model)
    learn.validate()                      # and it captures again afterwards
    assert learn.grad_cam.idxs is not None and not hooks_on(learn.model)

def test_no_hook_left_after_an_exception_in_the_model():
    learn = digits_learner(cbs=GradCAMCallback())
    body = learn.model[0]
    def fail(m, i, o): raise RuntimeError('model failed')
    h = body[2].register_forward_hook(fail)
    with pytest.raises(RuntimeError, match='model failed'): learn.validate()
    h.remove()
    assert not hooks_on(learn.model)

def test_no_hook_left_after_a_cancelled_fit():
    learn = digits_learner(cbs=GradCAMCallback())
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=RaiseAt(CancelFitException(), 'after_pred'))
    assert not hooks_on(learn.model)
    assert learn.grad_cam.idxs is None    # a half-done pass is never published

def test_grads_and_requires_grad_untouched(trained):
    learn = digits_learner(cbs=GradCAMCallback())
    learn.model.load_state_dict(trained.model.state_dict())
    for p in learn.model[0].parameters(): p.requires_grad_(False)    # frozen body, as after `learn.freeze()`
    params = list(learn.model.parameters())
    params[-1].grad = torch.full_like(params[-1], 3.)
    flags = [p.requires_grad for p in params]
    learn.validate()
    assert learn.grad_cam.idxs is not None
    assert [p.requires_grad for p in params] == flags
    assert all(p.grad is None for p in params[:-1]) and torch.equal(params[-1].grad, torch.full_like(params[-1], 3.))

def test_training_with_the_callback_gives_the_same_results():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)       # one thread: CPU kernels are then bitwise reproducible, so any difference is ours
    try:
        a = fit_quietly(digits_learner(cbs=GradCAMCallback()), epochs=1)
        b = fit_quietly(digits_learner(), epochs=1)
    finally: torch.set_num_threads(threads)
    assert a.recorder.values == b.recorder.values
    for (n,p),(_,q) in zip(a.model.state_dict().items(), b.model.state_dict().items()): assert torch.equal(p, q), n

def test_stale_capture_is_refused_with_a_clear_message(trained, tmp_path):
    learn = digits_learner(cbs=GradCAMCallback(k=3))
    learn.model.load_state_dict(trained.model.state_dict())
    with pytest.raises(ValueError, match='captured nothing yet'): learn.grad_cam.interpretation()
    learn.validate()
    learn.grad_cam.interpretation()
    fit_quietly(learn, epochs=1, lr=1e-5)   # trains, then validates: fresh again
    learn.grad_cam.interpretation()
    other = digits_learner(seed=1)
    other.path = learn.path = tmp_path
    other.save('other')                     # weights no pass of `learn` has seen
    with torch.no_grad(): learn.model[1][-1].bias.add_(1.)
    with pytest.raises(ValueError, match='stale'): learn.grad_cam.interpretation()
    learn.validate()
    learn.grad_cam.interpretation()
    learn.load('other')                     # loading other weights counts as a change, as the message says
    with pytest.raises(ValueError, match='trained or been loaded'): learn.grad_cam.interpretation()

def test_get_preds_does_not_replace_the_capture(trained):
    cb = trained.grad_cam
    idxs = cb.idxs.clone()
    dl = trained.dls.test_dl(trained.dls.valid.items[:5], with_labels=True)
    trained.get_preds(dl=dl)
    fct.test_eq(cb.idxs, idxs)

def test_export_drops_captured_tensors(trained, tmp_path):
    cb = trained.grad_cam
    assert cb.idxs is not None
    trained.path = tmp_path
    trained.export('with_cb.pkl')
    assert cb.idxs is not None                        # the live capture is kept
    loaded = load_learner(tmp_path/'with_cb.pkl')
    assert isinstance(loaded.grad_cam, GradCAMCallback) and loaded.grad_cam.idxs is None and loaded.grad_cam.k == 9
    with trained.removed_cbs(cb): trained.export('without_cb.pkl')
    extra = (tmp_path/'with_cb.pkl').stat().st_size - (tmp_path/'without_cb.pkl').stat().st_size
    assert extra < 10_000, f"the callback added {extra} bytes to the export: captured tensors were pickled"

@pytest.mark.parametrize('k', [0, -1, 2.5, '9', True])
def test_bad_k_says_what_to_pass(k):
    with pytest.raises(ValueError, match='positive int'): GradCAMCallback(k=k)

@pytest.mark.parametrize('where', ['capture_maps', 'item_losses'])
def test_a_pass_that_fails_to_be_explained_never_stops_training(where, monkeypatch):
    "Issue 32: an error of ours while explaining a pass (after the pass, or in a batch) leaves the pass unexplained; `fit` goes on"
    import fastcam.callback as fc
    def broken(*args, **kwargs): raise RuntimeError('a bug of ours')
    learn = digits_learner(cbs=GradCAMCallback())
    real = getattr(fc, where)
    monkeypatch.setattr(fc, where, broken)      # `item_losses`: read in the validation pass only (training uses the learner's loss)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                      # bitwise reproducible: the same training as without the callback
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            fit_quietly(learn, epochs=3)
        alone = fit_quietly(digits_learner(), epochs=3)
    finally: torch.set_num_threads(threads)
    ours = [str(w.message) for w in caught if 'could not explain' in str(w.message)]
    assert len(ours) == 1 and 'epoch 0' in ours[0] and 'a bug of ours' in ours[0] and 'please report it' in ours[0], ours
    assert sorted(learn.grad_cam.unexplained) == [0, 1, 2] and 'a bug of ours' in learn.grad_cam.unexplained[2]
    assert learn.recorder.values == alone.recorder.values and len(learn.recorder.values) == 3   # every epoch trained, as without it
    for p,q in zip(learn.model.state_dict().values(), alone.model.state_dict().values()): assert torch.equal(p, q)
    assert learn.grad_cam.capture is None and not learn.grad_cam.history and not hooks_on(learn.model)
    monkeypatch.setattr(fc, where, real)
    with pytest.raises(ValueError, match='captured nothing yet'): learn.grad_cam.interpretation()
    learn.validate()                              # explained again once the bug is gone
    assert learn.grad_cam.interpretation().top_losses_table(3).shape[0] == 3
    monkeypatch.setattr(fc, where, broken)
    with pytest.raises(RuntimeError, match='a bug of ours'):   # outside `fit`, nothing to protect: it says what failed
        learn.validate(); learn.grad_cam.maps                  # (the maps of a `validate()` are made when first read)
    assert not hooks_on(learn.model)
