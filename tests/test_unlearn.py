"Issue 33: a shortcut found is unlearned in training (UnlearnShortcuts), and shown gone with the same tests (recheck_shortcuts)."
import re, warnings, pytest, torch, torch.nn as nn, matplotlib.pyplot as plt
from fastai.vision.all import (Learner, vision_learner, resnet18, accuracy, MixUp, CutMix, Normalize, MSELossFlat, CrossEntropyLossFlat,
                               set_seed, Callback)
from fastcam.all import *
from conftest import hooks_on, fit_quietly

@pytest.fixture(scope='module')
def revised():
    "The digit CNN that relies on a mark on every 7, revised for 3 epochs at lr 1e-3"
    learn = digit_learner(shortcut='7', cbs=GradCAMCallback())
    acc_before = learn.validate()[1]
    before = learn.grad_cam.interpretation().find_shortcuts()
    with learn.no_bar(), learn.no_logging(): table = learn.revise_shortcuts(epochs=3, lr=1e-3)
    return learn, before, table, acc_before

def accuracy_on(learn, dl):
    with learn.no_bar(): return float(learn.validate(dl=dl)[1])

def test_the_mark_stops_being_evidence_and_the_model_stays_right(revised):
    learn,before,table,acc_before = revised
    b,r = before.iloc[0],table.iloc[0]
    assert (b['class'], b.kind, b.flagged) == ('7', 'place', True) and b.lost >= 0.5 and b.gained >= 0.5
    assert (r['class'], r.kind, r.region) == ('7', 'place', b.region)
    assert r.lost_after <= 0.10 and r.gained_after <= 0.10 and r.reliance_after <= 0.10 and r.gone and not r.flagged_after
    assert r.removed_accuracy_before <= 0.2 and r.removed_accuracy_after >= 0.8
    assert abs(accuracy_on(learn, learn.dls.valid) - acc_before) <= 0.05            # still right on the marked scenes
    clean = digit_learner()                                                      # the same scenes, never marked
    unmarked = clean.dls.valid.new(shuffle=False)
    assert accuracy_on(learn, unmarked) >= accuracy_on(clean, unmarked) - 0.05      # right without any mark, as a model that never saw one
    found = table.attrs['found']
    assert not (found.flagged & (found['class']=='7')).any()                      # a fresh find_shortcuts agrees
    assert hooks_on(learn.model) == [] and not any(type(cb).__name__=='UnlearnShortcuts' for cb in learn.cbs)

def test_the_revision_is_in_the_figure_and_the_report(revised, tmp_path):
    learn,_,table,_ = revised
    interp = learn.grad_cam.interpretation()
    fig = interp.plot_revision()
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith('7, before: FLAGGED') and titles[1].startswith('7, after: not flagged') and 'accuracy without its place' in titles[1]
    assert len(fig.axes[0].patches) == 1 and all(ax.get_images() for ax in fig.axes)   # the region drawn; the maps over an image
    plt.close(fig)
    page = interp.cam_report(tmp_path/'r.html', k=2, method='gradcam').read_text()
    section = page[page.index('<h2>Shortcuts revised</h2>'):]
    assert 'Gone after the revision: 7 (place)' in section and 'reliance_before' in section and '<img' in section

def test_recheck_reads_the_rows_find_shortcuts_flagged(revised):
    learn,before,_,_ = revised
    again = learn.grad_cam.interpretation().recheck_shortcuts(before)
    assert list(again['class']) == ['7'] and again.gone.all()
    with pytest.raises(ValueError, match='flags nothing'): learn.grad_cam.interpretation().recheck_shortcuts(before[~before.flagged])

def small(cbs=None, epochs=1, **kw):
    set_seed(0, reproducible=True)
    dls = digit_dls(n_train=128, n_valid=32, bs=32, **kw)
    set_seed(0, reproducible=True)
    learn = Learner(dls, digit_cnn(dls.c), metrics=accuracy)
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs, 1e-3, cbs=cbs)
    return learn

def test_a_table_with_nothing_flagged_changes_nothing_bit_for_bit(revised):
    _,before,_,_ = revised
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = small()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            quiet = small(UnlearnShortcuts(before[~before.flagged]))
    finally: torch.set_num_threads(threads)
    assert any('nothing to unlearn' in str(w.message) for w in caught)
    assert alone.recorder.values == quiet.recorder.values
    for p,q in zip(alone.model.state_dict().values(), quiet.model.state_dict().values()): assert torch.equal(p, q)

def text_learner_untrained():
    from fastai.text.all import text_classifier_learner, AWD_LSTM, awd_lstm_clas_config
    dls = text_dls(n_train=64, n_valid=32, bs=16)
    return text_classifier_learner(dls, AWD_LSTM, config=dict(awd_lstm_clas_config, emb_sz=16, n_hid=16, n_layers=1), pretrained=False)

def segmentation_learner():
    dls = digit_dls(n_train=32, n_valid=16, task='segmentation', bs=8)
    return Learner(dls, nn.Sequential(nn.Conv2d(1, len(digit_codes), 3, padding=1)), loss_func=CrossEntropyLossFlat(axis=1))

@pytest.mark.parametrize('make,shortcut,msg', [
    (lambda: small(epochs=0), [('7', (60, 60, 80, 80))], r"not inside these 64x64 images: give \(x0, y0, x1, y1\)"),
    (lambda: small(epochs=0), [('seven', (0, 0, 8, 8))], r"class 'seven' is not in this learner's vocabulary"),
    (lambda: small(epochs=0), [('7', 'texture')], r"'texture' is no kind of shortcut"),
    (text_learner_untrained, [('positive', 'border')], r"a text learner has no such images"),
    (segmentation_learner, [('7', (0, 0, 8, 8))], r"a segmentation learner has no such images"),
    (lambda: Learner(digit_dls(n_train=32, n_valid=16, task='regression', bs=8), digit_cnn(1), loss_func=MSELossFlat()),
     [('7', (0, 0, 8, 8))], r"a regression .* learner has no such images"),
], ids=['region outside', 'class not in vocab', 'unknown kind', 'text', 'segmentation', 'regression'])
def test_bad_input_says_what_to_do_before_the_first_batch_and_leaves_the_learner_as_it_was(make, shortcut, msg):
    learn = make()
    state = {k: v.clone() for k,v in learn.model.state_dict().items()}
    cbs = sorted(type(cb).__name__ for cb in learn.cbs)
    with pytest.raises(ValueError, match=msg):
        with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=UnlearnShortcuts(shortcut))
    assert all(torch.equal(state[k], v) for k,v in learn.model.state_dict().items()) and sorted(type(cb).__name__ for cb in learn.cbs) == cbs

class Batches(Callback):
    "The first training batch's inputs and targets, as the model gets them (`order`: before or after UnlearnShortcuts)"
    def __init__(self, order): self.order,self.seen = order,None
    def before_batch(self):
        if self.training and self.seen is None: self.seen = (plain(self.xb[0]).clone(), plain(self.yb[0]).clone())

@pytest.mark.parametrize('recipe', ['normalised, MixUp, fine_tune', 'CutMix, to_fp16'])
def test_it_revises_the_batch_as_the_model_gets_it_in_fastai_recipes(recipe):
    set_seed(0, reproducible=True)
    dls = digit_dls(n_train=128, n_valid=32, bs=32, shortcut='7', batch_tfms=Normalize.from_stats([0.2], [0.2]) if 'normalised' in recipe else None)
    learn = vision_learner(dls, resnet18, pretrained=False, n_in=1, metrics=accuracy)
    if 'fp16' in recipe: learn = learn.to_fp16()
    box = (0, 0, 16, 16)
    early,late = Batches(-6),Batches(-4)
    cbs = [UnlearnShortcuts([('7', box)], share=1.0), early, late, MixUp() if 'MixUp' in recipe else CutMix()]
    with learn.no_bar(), learn.no_logging():
        if 'fine_tune' in recipe: learn.fine_tune(1, 1e-3, freeze_epochs=1, cbs=cbs)
        else: learn.fit(1, 1e-3, cbs=cbs)
    (x0,y),(x1,_) = early.seen,late.seen
    seven = y==learn.dls.vocab.o2i['7']
    region = lambda x: x[..., box[1]:box[3], box[0]:box[2]].flatten(1)
    assert seven.any() and (~seven).any()
    assert not torch.equal(region(x0), region(x1)) and torch.equal(x1[..., 20:, 20:], x0[..., 20:, 20:])   # only the region changed
    donors = region(x0)[~seven]                                                  # a 7's region now holds another class's
    assert all((donors == r).all(1).any() for r in region(x1)[seven])
    sources = region(x0)[seven]                                                  # and the others' a 7's
    assert all((sources == r).all(1).any() for r in region(x1)[~seven])
    assert hooks_on(learn.model) == [] and all(torch.isfinite(torch.tensor(v[0])) for v in learn.recorder.values)
