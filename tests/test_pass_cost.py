"The fixed cost of a pass (issue 29): nothing is re-run at the end of a pass whose maps nobody reads, and the maps made later are right."
import pytest, torch
import fastcore.test as fct
import fastcam.callback
from fastcam.all import *
from conftest import digits_learner, fit_quietly

@pytest.fixture
def replays(monkeypatch):
    "Every call of the replay that makes a pass's maps"
    calls, orig = [], fastcam.callback.capture_maps
    monkeypatch.setattr(fastcam.callback, 'capture_maps', lambda *a, **k: calls.append(len(a[1]['idxs'])) or orig(*a, **k))
    return calls

def copy_of(trained, **kw):
    learn = digits_learner(cbs=GradCAMCallback(**kw))
    learn.model.load_state_dict(trained.model.state_dict())
    return learn

def test_validate_makes_no_maps_until_they_are_read(trained, replays):
    learn = copy_of(trained, k=4)
    learn.validate()
    cb = learn.grad_cam
    assert replays == [] and not cb.capture.maps_made                  # the pass ended without a replay
    assert len(cb.idxs) == 4 and len(cb.all_losses) == len(learn.dls.valid_ds)
    interp = cb.interpretation()
    table = interp.top_losses_table(4)                                   # the table needs no maps
    assert replays == [] and list(table['index']) == cb.idxs.tolist()
    maps = cb.cam_actual                                                 # read: made now, once, for the k items
    assert replays == [4]
    fct.test_close(maps, grad_cam(learn.model, cb.inputs, cb.targs), eps=1e-4)
    fig = interp.plot_top_losses_cam(k=4)
    assert replays == [4] and 'Grad-CAM' in fig._suptitle.get_text()    # the figure used them: no second replay

def test_maps_left_for_later_are_never_made_from_other_weights(trained, replays):
    learn = copy_of(trained, k=3)
    learn.validate()
    with torch.no_grad(): learn.model[1][-1].bias.add_(1.)
    with pytest.raises(ValueError, match=r"weights have changed.*learn.validate\(\)"): learn.grad_cam.maps
    assert learn.grad_cam.is_stale and replays == []
    learn.validate()
    assert learn.grad_cam.maps['gradcam']['actual'].shape[0] == 3

def test_a_pass_that_fit_records_makes_its_maps_at_once(replays):
    learn = fit_quietly(digits_learner(cbs=GradCAMCallback(k=3), n_train=96, n_valid=32), epochs=2)
    assert len(replays) == 2                                             # one replay per recorded pass: the weights change next
    assert learn.grad_cam.capture.maps_made and len(learn.grad_cam.history) == 2
    assert all(r['top']['maps']['gradcam']['actual'].shape[0] == 3 for r in learn.grad_cam.history)
    replays.clear()
    learn = fit_quietly(digits_learner(cbs=GradCAMCallback(k=3, keep_history=False), n_train=96, n_valid=32), epochs=2)
    assert replays == [] and not learn.grad_cam.capture.maps_made      # nothing records the passes: no replay at all
    assert learn.grad_cam.cam_pred.shape[0] == 3 and replays == [3]
