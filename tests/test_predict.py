"Issue 35: one input at a time. `learn.predict_cam(item)` is `learn.predict(item)` with the map, made as `cam()` makes it."
import subprocess, sys, numpy as np, pytest, torch, torch.nn as nn, matplotlib.pyplot as plt
from pathlib import Path
from PIL import Image
import fastcore.test as fct
from fastai.vision.all import Learner, load_learner, MSELossFlat, CrossEntropyLossFlat, accuracy_multi
from fastcam.all import *
from conftest import hooks_on, fit_quietly

@pytest.fixture(scope='module')
def deployed(tmp_path_factory):
    "The digit CNN, exported and loaded back (no callback, no validation data), and three held-out scenes as files"
    path = tmp_path_factory.mktemp('deployed')
    learn = digit_learner()
    learn.export(path/'digits.pkl')
    scenes = digit_scenes(3, seed=321, held_out=True)
    files = []
    for i,img in enumerate(scenes.image):
        files.append(path/f'scene{i}.png'); Image.fromarray(img).save(files[-1])
    return load_learner(path/'digits.pkl'), files, scenes, path

def test_the_prediction_is_learn_predicts_and_the_map_is_cams(deployed):
    learn,files,scenes,_ = deployed
    for f in files:
        got,want = learn.predict_cam(f),learn.predict(f)
        fct.test_eq(got[0], want[0]); fct.test_eq(got[1], want[1]); fct.test_close(got[2], want[2], eps=1e-5)
        x = learn.dls.test_dl([f]).one_batch()[0]
        for method in ('gradcam', 'hirescam', 'scorecam'):
            m = learn.predict_cam(f, method=method).cam
            fct.test_close(m, cam(learn.model, x, got[1][None], method, explained_layer(learn, None, x))[0], eps=1e-5)
    assert hooks_on(learn.model) == []

def test_other_targets_in_memory_images_and_a_batch(deployed):
    learn,files,scenes,_ = deployed
    x = learn.dls.test_dl([files[0]]).one_batch()[0]
    layer = explained_layer(learn, None, x)
    three = learn.predict_cam(files[0], target='3')
    fct.test_close(three.cam, cam(learn.model, x, 3, 'gradcam', layer)[0], eps=1e-6)
    actual = learn.predict_cam(files[0], target='actual', label=str(scenes.labels[0][0]))
    fct.test_close(actual.cam, cam(learn.model, x, scenes.labels[0][0], 'gradcam', layer)[0], eps=1e-6)
    pil,arr = Image.open(files[0]),np.asarray(Image.open(files[0]))
    for item in (pil, arr, torch.tensor(arr), torch.tensor(arr)/255.):   # in memory: the same as from the file
        fct.test_close(learn.predict_cam(item).cam, learn.predict_cam(files[0]).cam, eps=1e-6)
    batch = learn.predict_cam(files)                                    # a list: one batch, one result each
    assert len(batch) == 3 and all(torch.allclose(b.cam, learn.predict_cam(f).cam, atol=1e-5) for b,f in zip(batch, files))
    with pytest.raises(ValueError, match="not one of this model's classes"): learn.predict_cam(files[0], target='eleven')
    with pytest.raises(ValueError, match="method='auto' ranks the methods .* pass a method"): learn.predict_cam(files[0], method='auto')

def test_show_draws_the_image_with_its_map_and_caption(deployed):
    learn,files,_,_ = deployed
    r = learn.predict_cam(files[0])
    fig = r.show()
    ax = fig.axes[0]
    assert ax.get_title() == f"{r[0]} / {r.caption().split(' / ')[1]}" and len(ax.get_images()) == 2
    assert fig._suptitle.get_text() == 'Grad-CAM of model[0]'
    plt.close(fig)

def test_a_grayscale_image_for_a_colour_model_is_converted_as_learn_predict_does(tmp_path):
    learn = digit_learner(shortcut=dict(label='3', cue='colour', decoys=0.5))      # an RGB model
    grey = Image.fromarray(digit_scenes(1, seed=5, held_out=True).image[0])       # mode L
    grey.save(tmp_path/'grey.png')
    r = learn.predict_cam(grey)
    fct.test_eq(r[0], learn.predict(tmp_path/'grey.png')[0])
    assert learn.dls.test_dl([as_item(learn, grey)]).one_batch()[0].shape[1] == 3

def test_it_works_after_export_in_a_fresh_process(deployed):
    learn,files,_,path = deployed
    code = (f"from fastai.learner import load_learner; import fastcam.predict, torch; l = load_learner({str(path/'digits.pkl')!r}); "
            f"r = l.predict_cam({str(files[0])!r}); torch.save((r[0], r[1], r[3]), {str(path/'fresh.pt')!r})")
    subprocess.run([sys.executable, '-c', code], check=True, capture_output=True, timeout=300)
    d,i,m = torch.load(path/'fresh.pt', weights_only=False)
    mine = learn.predict_cam(files[0])
    assert d == mine[0] and int(i) == int(mine[1]) and torch.allclose(m, mine.cam, atol=1e-6)

def test_texts_multi_label_regression_and_segmentation():
    text = text_learner(epochs=4)
    r = text.predict_cam('the film was superb and the ending was long')
    want = text.predict('the film was superb and the ending was long')
    fct.test_eq(r[0], want[0]); fct.test_close(r[2], want[2], eps=1e-4)
    words = token_words(text.dls.vocab[0], r.about['input'], r.cam)
    assert max(words, key=lambda o: o[1])[0] == 'superb'                    # the deciding word
    fig = r.show(); assert any(t.get_text()=='superb' for t in fig.axes[0].texts); plt.close(fig)
    ml = Learner(digit_dls(n_train=256, n_valid=64, max_digits=2, bs=32), digit_cnn(10), metrics=accuracy_multi)
    fit_quietly(ml, 2)
    scene = digit_scenes(1, max_digits=2, seed=9, held_out=True).image[0]
    r = ml.predict_cam(scene)
    assert isinstance(r.cam, dict) and set(r.cam) == {str(ml.dls.vocab[k]) for k in (r[2]>0.5).nonzero()[:, 0].tolist()} | \
           ({str(ml.dls.vocab[int(r[2].argmax())])} if not (r[2]>0.5).any() else set())
    fig = r.show(); assert len(fig.axes) == len(r.cam); plt.close(fig)
    reg = Learner(digit_dls(n_train=64, n_valid=32, task='regression', bs=16), digit_cnn(1), loss_func=MSELossFlat())
    r = reg.predict_cam(digit_scenes(1, seed=3).image[0])
    assert r.cam.shape == (8, 8) and r.caption().startswith('predicted ')
    seg = Learner(digit_dls(n_train=32, n_valid=16, task='segmentation', bs=8), nn.Sequential(nn.Conv2d(1, 11, 3, padding=1)), loss_func=CrossEntropyLossFlat(axis=1))
    r = seg.predict_cam(digit_scenes(1, seed=3).image[0], layer=seg.model[0])
    present = {str(dl_vocab(seg.dls)[k]) for k in r[2].argmax(0).unique().tolist()}
    assert set(r.cam) == present and all(m.shape == (64, 64) for m in r.cam.values())
