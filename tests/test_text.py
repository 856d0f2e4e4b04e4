"Text classifiers (issue 27): which words the model read, with the callback, the figure, the table and the report."
import re, pytest, torch, matplotlib.pyplot as plt
import fastcore.test as fct
from fastai.text.all import ClassificationInterpretation
from fastcam.all import *
from conftest import hooks_on

@pytest.fixture(scope='module')
def text():
    learn = text_learner(cbs=GradCAMCallback(k=16))
    return learn

def points(maps, x, dls): return (maps.argmax(1) == deciding_positions(dls, x).to(maps.device)).float()

def test_default_maps_point_at_the_deciding_word(text):
    model,dls,hits,before = text.model,text.dls,[],[m.training for m in text.model.modules()]
    for x,y in dls.valid:
        maps = cam(model, x, y, layer='auto')
        fct.test_eq(maps.shape, x.shape)                                       # one value per token, aligned with the ids
        assert (maps[plain(x)==1] == 0).all()                                  # padding never gets weight
        with torch.no_grad(): ok = first_output(model.eval()(x)).argmax(1) == y
        hits.append(points(maps, x, dls)[ok])
    assert torch.cat(hits).mean() >= 0.9 and len(torch.cat(hits)) > 200
    assert hooks_on(model) == [] and model[0].bptt == 72                      # nothing left behind, the encoder as it was

def test_the_callbacks_maps_are_aligned_with_its_inputs_and_the_dataset(text):
    cb = text.grad_cam
    fct.test_eq(cb.maps['gradcam']['actual'].shape, cb.inputs.shape)
    assert points(cb.maps['gradcam']['actual'], cb.inputs, text.dls).mean() >= 0.9
    theirs = ClassificationInterpretation.from_learner(text)                  # fastai's own pass, in dataset order
    fct.test_close(cb.all_losses, theirs.losses, eps=1e-3)                   # the pass came sorted by length: indices are the dataset's
    x,_ = batch_of(text.dls.valid, cb.idxs[:4])
    for a,b in zip(cb.inputs[:4], x): fct.test_eq(a[a!=1], b[b!=1])          # the kept inputs are those items' tokens

def test_figure_table_and_report_show_the_words(text, tmp_path):
    interp = text.grad_cam.interpretation()
    fig = interp.plot_top_losses_cam(k=3)
    t = top_loss_items(interp, 3)
    words = [w for w,_ in token_words(text.dls.vocab[0], t['inputs'][0])]
    drawn = [x.get_text() for x in fig.axes[0].texts]
    assert drawn[:len(words)] == words and not any(w.startswith('xx') for w in drawn)   # the words, fastai's markers left out
    assert re.fullmatch(r'\w+/\w+ / [\d.]+ / [\d.e-]+', fig.axes[0].get_title())       # the caption images have
    plt.close(fig)
    df = interp.top_losses_table(3)
    assert df['item'][0] == ' '.join(words)
    page = interp.cam_report(tmp_path/'r.html', k=3).read_text()
    top_word = max(token_words(text.dls.vocab[0], t['inputs'][0], t['maps']['gradcam']['actual'][0]), key=lambda o: o[1])[0]
    assert page.count('class="w"') >= sum(len(token_words(text.dls.vocab[0], x)) for x in t['inputs']) and top_word in page

def test_methods_for_sequences_and_those_that_say_they_do_not_apply(text):
    x,y = text.dls.valid.one_batch()
    maps = cam(text.model, x, y, ['gradcam', 'hirescam', 'layercam', 'gradxinput', 'ablationcam'], layer='auto')
    for m in ('gradcam', 'hirescam', 'layercam'): assert points(maps[m], x, text.dls).mean() >= 0.9, m
    assert (maps['gradxinput'] < 0).any()                                     # signed
    for m in ('scorecam', 'integrated-gradients'):
        with pytest.raises(ValueError, match='token ids|CAM method'): cam(text.model, x, y, m, layer='auto')
    r = text.grad_cam.interpretation().rank_methods()
    assert 'gradcam' in r.index and 'integrated-gradients' not in r.index and r.loc['gradcam', 'score'] > r.loc['random', 'score']

def test_texts_padded_by_chunks_at_the_start_are_explained_whole():
    "A batch of short and long texts read in 8-token chunks: fastai pads the short ones with whole chunks at the start"
    dls = text_dls(n_train=600, n_valid=200, seed=3, seq_len=8)
    learn = text_learner(dls, epochs=6)
    learn.model[0].bptt = 8
    lengths = torch.tensor([len(o[0]) for o in dls.valid_ds])
    order = lengths.argsort()
    x,y = batch_of(dls.valid, torch.cat([order[:16], order[-16:]]))
    assert (x[:, :8]==1).all(1).any()                                        # rows that start with a chunk of padding
    maps = cam(learn.model, x, y, layer='auto')
    with torch.no_grad(): ok = torch.stack([first_output(learn.model.eval()(r[r!=1][None]))[0].argmax() for r in x]) == y
    assert ok.float().mean() > 0.9 and points(maps, x, dls)[ok].mean() >= 0.9
    assert (maps[x==1] == 0).all() and learn.model[0].bptt == 8 and hooks_on(learn.model) == []
