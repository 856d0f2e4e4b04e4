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

@pytest.fixture(scope='module')
def reviews():
    "Issue 32: texts of 20 to 400 words (several bptt chunks of 72 tokens), trained 4 epochs with history, tracking short texts"
    dls = text_dls(n_train=800, n_valid=200, min_words=20, max_words=400, bs=32)
    lengths = torch.tensor([len(o[0]) for o in dls.valid_ds])
    order = lengths.argsort()
    track = torch.cat([order[:3], order[len(order)//2:][:3]]).tolist()   # the shortest texts and some of middle length: narrower rows than the top's
    learn = text_learner(dls, epochs=4, cbs=GradCAMCallback(k=9, track=track))
    return learn, lengths, track

def test_reviews_of_realistic_length_train_and_are_recorded_at_every_epoch(reviews):
    learn,lengths,track = reviews
    cb = learn.grad_cam
    fct.test_eq([r['epoch'] for r in cb.history], [0, 1, 2, 3])
    assert learn.recorder.values[-1][-1] > 0.9                               # it learned
    for rec in cb.history:
        fct.test_eq(sorted(rec['tracked']['idxs'].tolist()), sorted(track))
        top,tr = rec['top']['maps']['gradcam']['actual'],rec['tracked']['maps']['gradcam']['actual']
        assert top.shape[1] == tr.shape[1] >= lengths[rec['top']['idxs']].max()   # rows of both, padded alike
    spans = [int(lengths[r['top']['idxs']].max()-lengths[r['top']['idxs']].min()) for r in cb.history]
    assert max(spans) > 72                                                    # a pass's top losses: texts chunks apart
    df = cb.history_table()
    assert len(df) >= 4*9 and set(df.epoch) == {0, 1, 2, 3} and df.tracked.sum() == 4*6
    with pytest.raises(ValueError, match='history_table'): cb.plot_cam_history()   # the figure of images says what to use instead

def test_maps_of_long_texts_point_at_the_deciding_word(reviews):
    learn,lengths,_ = reviews
    hits,long = [],[]
    for x,y in learn.dls.valid:
        maps = cam(learn.model, x, y, layer='auto')
        with torch.no_grad(): ok = first_output(learn.model.eval()(x)).argmax(1) == y
        hits.append(points(maps, x, learn.dls)[ok]); long.append((x!=1).sum(1)[ok] > 2*72)
        assert (maps[plain(x)==1] == 0).all()
    hits,long = torch.cat(hits),torch.cat(long)
    assert hits.mean() >= 0.9 and hits[long].mean() >= 0.9 and long.sum() >= 50, (hits.mean(), hits[long].mean(), long.sum())
    cb = learn.grad_cam                                                        # the capture's maps too, padding or not
    ok = cb.decoded == cb.targs
    assert points(cb.maps['gradcam']['actual'], cb.inputs, learn.dls)[ok].mean() >= 0.9

def test_a_text_has_the_same_map_whatever_padding_its_batch_gives_it(reviews):
    learn,lengths,_ = reviews
    short,long = lengths.argsort()[:4],lengths.argsort()[-4:]
    x,y = batch_of(learn.dls.valid, short)
    xl,yl = batch_of(learn.dls.valid, torch.cat([short, long]))             # the same texts, padded to the longest
    for m in ('gradcam', 'gradcam++', 'xgradcam', 'eigencam', 'hirescam'):
        alone,padded = cam(learn.model, x, y, m, layer='auto'),cam(learn.model, xl, yl, m, layer='auto')[:4]
        for a,b,xa,xb in zip(alone, padded, x, xl): fct.test_close(a[xa!=1], b[xb!=1], eps=1e-5)

def test_reviews_figure_table_report_and_auto_method(reviews, tmp_path):
    learn,_,_ = reviews
    interp = learn.grad_cam.interpretation()
    t = top_loss_items(interp, 9)
    fig = interp.plot_top_losses_cam(k=9)
    assert len([ax for ax in fig.axes if ax.texts]) >= 9
    plt.close(fig)
    df = interp.top_losses_table(9)
    fct.test_eq(list(df['item']), [token_text(learn.dls.vocab[0], x) for x in t['inputs']])
    assert all(len(s.split()) >= 20 for s in df['item'])
    page = interp.cam_report(tmp_path/'r.html', k=9).read_text()
    assert page.count('class="w"') >= sum(len(token_words(learn.dls.vocab[0], x)) for x in t['inputs'])
    r = interp.rank_methods()                                                  # word deletion on probes of every length
    assert r.loc['gradcam', 'score'] > r.loc['random', 'score']
    with pytest.raises(ValueError, match='a text has no fixed places'): interp.find_shortcuts()
