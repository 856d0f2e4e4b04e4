"Maps worth looking at, on the user's own model (issue 19): resolution, assumptions, the method to trust, scores, patterns."
import re, warnings, pytest, torch, torch.nn as nn, matplotlib.pyplot as plt
import fastcore.test as fct
from fastai.vision.all import vision_learner, resnet18, Resize, set_seed, Learner, accuracy, ConvLayer, Flatten, ClassificationInterpretation
from torchvision.models import mobilenet_v3_small
from fastcam.all import *
from conftest import digits_learner, fit_quietly, hooks_on

def footer(fig): return ' '.join(t.get_text() for t in fig.texts)

# ---------------------------------------------------------------- 1. resolution
@pytest.fixture(scope='module')
def resnet64():
    "A `vision_learner` ResNet-18 on 64-pixel scenes: its body's map is 2x2"
    set_seed(0)
    dls = digit_dls(n_train=128, n_valid=48, seed=0, bs=16)
    learn = vision_learner(dls, resnet18, pretrained=False, n_in=1, metrics=accuracy, cbs=GradCAMCallback(k=4))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        fit_quietly(learn, epochs=1, lr=1e-3)
    return learn, w

class CountForwards:
    "Counts the model's forward passes and the items they see"
    def __init__(self, model): self.calls,self.items,self.h = 0,0,model.register_forward_hook(self)
    def __call__(self, m, i, o): self.calls += 1; self.items += len(i[0])

def test_a_resnet_at_64px_is_explained_at_a_stage_with_real_detail(resnet64):
    learn,w = resnet64
    cb = learn.grad_cam
    assert cb.hooked_layer is learn.model[0][5]                              # layer2: 8x8, not the body's 2x2
    fct.test_eq(cb.cam_actual.shape, (4, 8, 8)); fct.test_eq(cb.mean_maps.shape, (4, 8, 8))
    fct.test_close(cb.cam_actual, grad_cam(learn.model, cb.inputs, cb.cam_actual_for, layer=learn.model[0][5]), eps=1e-4)
    fct.test_eq(cb.idxs.tolist(), ClassificationInterpretation.from_learner(learn).top_losses(4)[1].tolist())   # chosen at model[0], as before
    assert not [o for o in w if 'coarser' in str(o.message)]                 # no warning: the map is fine enough
    assert not hooks_on(learn.model)

def test_the_finer_layer_costs_no_pass_over_the_data(resnet64):
    learn,_ = resnet64
    n,bs = len(learn.dls.valid_ds),learn.dls.valid.bs
    c = CountForwards(learn.model)
    try: learn.validate()
    finally: c.h.remove()
    assert c.items <= n + 2*learn.grad_cam.k + 1, (c.calls, c.items)        # the pass, the k kept items re-run once (and one pick)

def test_figures_and_report_say_which_layer(resnet64, tmp_path):
    learn,_ = resnet64
    interp = learn.grad_cam.interpretation()
    fig = interp.plot_top_losses_cam(k=2)
    assert 'model[0][5] (8x8 maps)' in fig._suptitle.get_text()
    plt.close(fig)
    fig = interp.plot_cam_methods(k=2, methods=['gradcam', 'layercam'])
    assert 'model[0][5] (8x8 maps)' in fig._suptitle.get_text()
    plt.close(fig)
    html = interp.cam_report(tmp_path/'r.html', k=2).read_text()
    assert 'model[0][5] (8x8 maps)' in html

def test_a_coarse_layer_given_by_the_user_is_used_and_warned_about(resnet64):
    learn,_ = resnet64
    interp = learn.grad_cam.interpretation()
    with pytest.warns(UserWarning, match='2x2, coarser than 7x7'):
        fig = interp.plot_top_losses_cam(k=2, layer=learn.model[0])
    assert 'model[0] (2x2 maps)' in fig._suptitle.get_text() and 'coarser than 7x7' in footer(fig)
    plt.close(fig)
    set_seed(0)
    other = vision_learner(learn.dls, resnet18, pretrained=False, n_in=1, cbs=GradCAMCallback(k=3, layer=None))
    other.grad_cam.layer = other.model[0]                                     # `layer=` wins
    with pytest.warns(UserWarning, match='coarser than 7x7'): other.validate()
    fct.test_eq(other.grad_cam.cam_actual.shape, (3, 2, 2))

# ---------------------------------------------------------------- 2. methods outside their assumptions
def hardswish_cnn(n_out=10):
    "A small CNN whose body ends in Hardswish (as MobileNetV3's): its activations have both signs"
    body = nn.Sequential(ConvLayer(1, 16, stride=2, act_cls=nn.Hardswish), ConvLayer(16, 32, stride=2, act_cls=nn.Hardswish),
                         ConvLayer(32, 32, stride=2, act_cls=nn.Hardswish))
    return nn.Sequential(body, nn.Sequential(nn.AdaptiveAvgPool2d(1), Flatten(), nn.Linear(32, n_out)))

def test_mobilenet_hardswish_layer_warns_for_xgradcam_and_gradcam_pp():
    m = mobilenet_v3_small(num_classes=5).eval()
    x = torch.rand(2, 3, 64, 64)
    for method in ('xgradcam', 'gradcam++'):
        with pytest.warns(UserWarning, match=re.escape(f"{cam_methods[method].title} assumes non-negative activations")): cam(m, x, [0, 1], method, layer=m.features)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        cam(m, x, [0, 1], ['gradcam', 'hirescam', 'layercam'], layer=m.features)   # no assumption, no warning

def test_the_figure_and_report_note_a_broken_assumption(tmp_path):
    set_seed(0)
    dls = digit_dls(n_train=96, n_valid=32, seed=0, bs=16)
    learn = Learner(dls, hardswish_cnn(), metrics=accuracy, cbs=GradCAMCallback(k=3, methods=['xgradcam', 'layercam']))
    with pytest.warns(UserWarning, match='XGrad-CAM assumes non-negative'): fit_quietly(learn, epochs=1)
    cb = learn.grad_cam
    assert set(cb.capture.notes) == {'xgradcam'} and 'negative' in cb.capture.notes['xgradcam']
    interp = cb.interpretation()
    fig = interp.plot_top_losses_cam(k=2, method='xgradcam')
    assert 'Warning: XGrad-CAM assumes non-negative activations' in footer(fig)
    plt.close(fig)
    fig = interp.plot_top_losses_cam(k=2, method='layercam')
    assert 'assumes' not in footer(fig)
    plt.close(fig)
    r = interp.rank_methods()
    assert r.assumption['xgradcam'] and r.assumption['gradcam++'] and not r.assumption['layercam']
    assert pick_method(interp)[0] not in ('xgradcam', 'gradcam++')            # never picked where its assumption fails
    html = interp.cam_report(tmp_path/'r.html', k=2, methods=['xgradcam']).read_text()
    assert 'XGrad-CAM assumes non-negative activations' in html

# ---------------------------------------------------------------- 3. which method to trust, on this model
def test_auto_method_ranks_on_correct_items_seen_during_validation_and_says_why(trained, tmp_path):
    cb = trained.grad_cam
    probe = cb.capture.probe
    assert 0 < len(probe['idxs']) <= 12 and (probe['decoded'] == probe['targs']).all()     # correctly classified, no extra pass
    interp = cb.interpretation()
    r = interp.rank_methods()
    assert set(r.index) == {*auto_candidates, 'random'} and (r.n == len(probe['idxs'])).all()
    assert list(r.score) == sorted(r.score, reverse=True)
    fct.test_close(torch.tensor(r.score.values), torch.tensor((r.insertion - r.deletion).values))
    best = r[(r.assumption == '') & (r.index != 'random')].index[0]
    assert r.score[best] > r.score['random']                               # the pick beats the random map
    fig = interp.plot_top_losses_cam(k=2, method='auto')
    title = cam_methods[best].title
    assert f"method='auto' picked {title}" in footer(fig) and title in fig._suptitle.get_text()
    plt.close(fig)
    html = interp.cam_report(tmp_path/'r.html', k=2, method='auto').read_text()
    assert f"picked {title}" in html

# ---------------------------------------------------------------- 4. scores that mean something on the top losses
def test_scores_give_no_verdict_where_the_probability_cant_move(trained, capsys):
    interp = trained.grad_cam.interpretation()
    df = interp.cam_scores(k=6, methods=['gradcam', 'random'], metrics=['deletion', 'insertion'], steps=6)
    assert 'scoring the maps' in capsys.readouterr().out                    # progress, as plain lines when piped
    low = df[df.probability < 0.1]
    assert len(low) and not low.measurable.any() and low.beats_random.isna().all()   # no verdict ...
    high = df[df.probability >= 0.1]
    assert high.measurable.all() and high.beats_random.notna().all()
    rnd = df[df.method == 'random'].set_index('index').deletion
    fct.test_close(torch.tensor(df.deletion_random.values), torch.tensor(rnd[df['index']].values))    # the random map's own value beside
    auto = interp.cam_scores(k=6, methods=['gradcam'], metrics=['deletion'], steps=6, cam_for='auto')
    assert auto.measurable.all()                                            # the predicted class's map can be scored

def test_tiles_say_not_measurable_and_score_the_predicted_map_instead(trained):
    interp = trained.grad_cam.interpretation()
    t = top_loss_items(interp, 4)
    p_actual = t['probs'].gather(1, t['targs'][:, None].long())[:, 0]
    fig = interp.plot_top_losses_cam(k=4, score='deletion')
    for i,ax in enumerate(fig.axes[:4]):
        note = ' '.join(o.get_text() for o in ax.texts)
        if p_actual[i] < 0.1:
            assert 'not measurable' in note and "'s map: deletion AUC" in note and '(random ' in note, note
        else: assert '(random ' in note and 'not measurable' not in note, note
    plt.close(fig)

# ---------------------------------------------------------------- 5. filter patterns that excite their channel
def test_each_pattern_beats_noise_or_the_figure_says_it_could_not(trained):
    model,layer = trained.model,trained.model[0][3]
    p = filter_patterns(model, layer, range(16), steps=40)
    ex = pattern_excitation(model, layer, p, range(16))
    assert ex.excited.sum() >= 12 and (ex.pattern[ex.excited] > ex.noise[ex.excited]).all()
    fig = plot_filter_patterns(model, layer, range(16), patterns=p)
    titles = [ax.get_title() for ax in fig.axes if ax.get_images()]
    for ok,title in zip(ex.excited, titles): assert ('could not be excited' in title) != ok, (ok, title)
    assert 'model[0][3]' in fig._suptitle.get_text()                        # names the layer, not the model
    plt.close(fig)

def test_a_channel_dead_at_the_faint_start_still_gets_a_pattern():
    conv = nn.Conv2d(1, 2, 3)
    with torch.no_grad(): conv.weight.fill_(1.); conv.bias.copy_(torch.tensor([-2., 0.]))     # channel 0: 0 on faint noise
    model = nn.Sequential(nn.Sequential(conv, nn.ReLU()), nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    with torch.no_grad(): assert model[0]((torch.rand(1, 1, 16, 16)-0.5)*0.2)[0, 0].max() == 0
    p = filter_patterns(model, model[0], [0, 1], size=16, steps=10)
    ex = pattern_excitation(model, model[0], p, [0, 1])
    assert ex.excited.all(), ex
