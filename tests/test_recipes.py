"Every fastai training recipe with the callback attached (issue 20): each runs through `fit` as a user writes it."
import threading, pytest, numpy as np, torch, torch.nn as nn, matplotlib.pyplot as plt
import fastcore.test as fct
from fastai.vision.all import (Learner, vision_learner, unet_learner, resnet18, accuracy, Callback, MixUp, CutMix,
                               SaveModelCallback, EarlyStoppingCallback, GradientAccumulation, ClassificationInterpretation,
                               SegmentationInterpretation, Interpretation, MSELossFlat, DataBlock, ImageBlock, PointBlock,
                               PILImageBW, ColReader, ColSplitter, set_seed, load_learner, CancelFitException)
from pytorch_grad_cam import GradCAM, LayerCAM
from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget
from fastcam.all import *
from conftest import digits_learner, fit_quietly, hooks_on

def finishes(f, timeout=120):
    "Whether `f()` returns (or raises) within `timeout` seconds, instead of hanging"
    t = threading.Thread(target=f, daemon=True)
    t.start(); t.join(timeout)
    return not t.is_alive()

class CountSteps(Callback):
    steps = 0
    def after_step(self): self.steps += 1

def left_on(model):
    "The hooks on `model` that are not the model's own (a U-Net hooks its encoder for its skip connections)"
    return [h for h in hooks_on(model) if type(getattr(h, '__self__', None)).__name__ != 'Hook']

def same_as_fastai(learn, k, interp_cls=ClassificationInterpretation):
    "The capture's top `k` are fastai's own (its `from_learner` runs the validation set again)"
    cb = learn.grad_cam
    losses,idxs = interp_cls.from_learner(learn).top_losses(k)
    fct.test_eq(cb.idxs.tolist(), idxs.tolist())
    fct.test_close(cb.losses, losses, eps=1e-4)
    assert not left_on(learn.model)

# ---------------------------------------------------------------- callbacks that swap the loss, reload weights, stop early
@pytest.mark.parametrize('mix', [MixUp, CutMix])
def test_mixup_and_cutmix_train_and_the_pass_is_captured(mix):
    learn = fit_quietly(digits_learner(cbs=[GradCAMCallback(k=5), mix()], n_train=96, n_valid=32), epochs=1)
    same_as_fastai(learn, 5)
    cb = learn.grad_cam
    fct.test_close(cb.cam_actual, grad_cam(learn.model, cb.inputs, cb.cam_actual_for, layer=cb.hooked_layer), eps=1e-4)
    assert len(cb.history) == 1 and cb.interpretation().plot_top_losses_cam(k=2)

def test_save_model_callback_reloading_the_last_epoch_keeps_the_capture_fresh(tmp_path):
    learn = digits_learner(cbs=GradCAMCallback(k=4), n_train=96, n_valid=32)
    learn.path = tmp_path
    fit_quietly(learn, epochs=2, cbs=SaveModelCallback(comp=lambda a, b: True, fname='last'))   # every epoch "improves": the last is reloaded
    interp = learn.grad_cam.interpretation()           # loading the very same weights changes version counters, not values
    fct.test_eq(interp.top_losses(4)[1].tolist(), learn.grad_cam.idxs.tolist())
    same_as_fastai(learn, 4)

def test_save_model_callback_reloading_an_earlier_epoch_uses_that_pass(tmp_path):
    learn = digits_learner(cbs=GradCAMCallback(k=4), n_train=96, n_valid=32)
    learn.path = tmp_path
    passes = []
    class KeepPasses(Callback):
        order = 99
        def after_epoch(self): passes.append(self.learn.grad_cam.idxs.clone())
    first_only = lambda val, best: best==-np.inf                    # only the first epoch "improves": its weights are reloaded
    fit_quietly(learn, epochs=3, cbs=[SaveModelCallback(comp=first_only, fname='first'), KeepPasses()])
    cb = learn.grad_cam
    assert not torch.equal(passes[0], passes[-1]) or not torch.equal(cb.history[0]['fingerprint'], cb.history[-1]['fingerprint'])
    interp = cb.interpretation()
    fct.test_eq(cb.idxs, passes[0])                                  # that epoch's recorded pass is the capture again
    same_as_fastai(learn, 4)
    fct.test_close(cb.cam_actual, grad_cam(learn.model, cb.inputs, cb.cam_actual_for, layer=cb.hooked_layer), eps=1e-4)
    fct.test_close(interp.losses, ClassificationInterpretation.from_learner(learn).losses, eps=1e-4)
    with torch.no_grad(): learn.model[1][-1].bias.add_(1.)           # other weights: no pass saw them
    with pytest.raises(ValueError, match='stale.*learn.validate()'): cb.interpretation()

def test_early_stopping_gradient_accumulation_fine_tune_and_lr_find():
    learn = digits_learner(cbs=[GradCAMCallback(k=4), EarlyStoppingCallback(patience=0, min_delta=10.)], n_train=96, n_valid=32)
    fit_quietly(learn, epochs=4)
    assert len(learn.grad_cam.history) < 4                      # stopped early, each finished pass recorded
    same_as_fastai(learn, 4)
    learn = digits_learner(cbs=[GradCAMCallback(k=4), GradientAccumulation(n_acc=64)], n_train=96, n_valid=32)
    fit_quietly(learn, epochs=1); same_as_fastai(learn, 4)
    learn = digits_learner(cbs=GradCAMCallback(k=4), n_train=96, n_valid=32)
    with learn.no_bar(), learn.no_logging():
        learn.lr_find(num_it=5, show_plot=False)
        learn.fine_tune(1, 1e-3)
    fct.test_eq([r['epoch'] for r in learn.grad_cam.history], [0, 1])
    same_as_fastai(learn, 4)

def test_tta_show_results_predict_and_export(tmp_path, trained):
    cb = trained.grad_cam
    idxs = cb.idxs.clone()
    with trained.no_bar():
        trained.tta(n=1)
        trained.show_results(max_n=2); plt.close('all')
        trained.predict(trained.dls.valid.items[0])
    fct.test_eq(cb.idxs, idxs)                                   # gathering passes don't replace the capture
    trained.path = tmp_path
    trained.export('m.pkl')
    loaded = load_learner(tmp_path/'m.pkl')
    with loaded.no_bar(): loaded.validate(dl=trained.dls.valid)
    fct.test_eq(loaded.grad_cam.idxs, idxs)

# ---------------------------------------------------------------- segmentation, regression, keypoints
@pytest.fixture(scope='module')
def seg():
    set_seed(0)
    dls = digit_dls(n_train=48, n_valid=16, seed=0, task='segmentation', bs=8)
    learn = unet_learner(dls, resnet18, pretrained=False, n_in=1, cbs=GradCAMCallback(k=4, methods=['layercam']))
    return fit_quietly(learn, epochs=1, lr=1e-3)

def test_segmentation_captures_the_worst_images(seg):
    cb = seg.grad_cam
    same_as_fastai(seg, 4, SegmentationInterpretation)
    assert isinstance(cb.interpretation(), SegmentationInterpretation)
    fct.test_eq(cb.targs.shape, (4, 64, 64)); fct.test_eq(cb.decoded.shape, (4, 64, 64))
    h,w = cb.cam_actual.shape[1:]
    assert h*w >= 49                                             # not the encoder's 2x2: a stage with real detail

def test_segmentation_map_is_the_gradient_of_a_class_over_its_region(seg):
    "As pytorch-grad-cam's `SemanticSegmentationTarget`: the sum of the class's logits over its pixels"
    cb = seg.grad_cam
    model,x = seg.model.eval(),cb.inputs.as_subclass(torch.Tensor)
    nonzero = 0
    for cam_for,cls,region in (('actual', cb.cam_actual_for, cb.targs), ('predicted', cb.cam_pred_for, cb.decoded)):
        targets = [SemanticSegmentationTarget(int(c), (r==c).float().numpy()) for c,r in zip(cls, region)]
        for method,pgc in (('gradcam', GradCAM), ('layercam', LayerCAM)):
            ours = cb.maps[method][cam_for]
            with pgc(model=model, target_layers=[cb.hooked_layer]) as c:
                c.get_target_width_height = lambda inp: ours.shape[:0:-1]
                theirs = torch.from_numpy(c(input_tensor=x, targets=targets))
            fct.test_close(torch.stack([normalize_map(m) for m in ours]), theirs, eps=1e-4)
            nonzero += int(ours.flatten(1).any(1).sum())
    assert nonzero >= len(x)                                     # the comparison is not between empty maps
    assert not left_on(seg.model)

def test_segmentation_figure_table_and_report(seg, tmp_path):
    interp = seg.grad_cam.interpretation()
    fig = interp.plot_top_losses_cam(k=3)
    fct.test_eq(len([ax for ax in fig.axes if ax.get_images()]), 3*3)    # actual mask, predicted mask, map
    caps = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert all(c.startswith('loss ') and 'pixel accuracy' in c for c in caps), caps
    plt.close(fig)
    df = interp.top_losses_table(3)
    fct.test_eq(list(df.columns), ['index', 'item', 'loss', 'pixel_accuracy', 'missed', 'mistaken_for'])
    assert df.pixel_accuracy.between(0, 1).all()
    assert set(df.missed) | set(df.mistaken_for) <= set(digit_codes)     # named by MaskBlock's codes, not their numbers
    html = interp.cam_report(tmp_path/'seg.html', k=3).read_text()
    assert html.count('class="tile"') == 3 and 'pixel accuracy' in html

@pytest.fixture(scope='module')
def regression():
    set_seed(0)
    dls = digit_dls(n_train=96, n_valid=32, seed=0, task='regression', bs=16)
    set_seed(0)
    return fit_quietly(Learner(dls, digit_cnn(1), loss_func=MSELossFlat(), cbs=GradCAMCallback(k=4)), epochs=2)

def test_regression_largest_errors_and_the_map_of_the_output(regression):
    cb = regression.grad_cam
    same_as_fastai(regression, 4, Interpretation)
    with torch.no_grad(): out = regression.model.eval()(cb.inputs.as_subclass(torch.Tensor))
    fct.test_close(cb.decoded, out, eps=1e-5)
    fct.test_close(cb.losses, ((out[:, 0]-cb.targs.flatten())**2), eps=1e-5)
    fct.test_close(cb.cam_actual, cam(regression.model, cb.inputs, 0, 'gradcam', layer=cb.hooked_layer), eps=1e-4)  # d output / d A
    interp = cb.interpretation()
    fig = interp.plot_top_losses_cam(k=2)
    cap = fig.axes[0].get_title()
    pred,actual = cap.split(' / ')[0].split('/')
    fct.test_close(float(pred), float(out[0, 0]), eps=0.01); fct.test_close(float(actual), float(cb.targs.flatten()[0]), eps=0.01)
    assert 'Predicted/Actual/Loss' in fig._suptitle.get_text()
    plt.close(fig)
    fct.test_eq(list(interp.top_losses_table(2).columns), ['index', 'item', 'predicted', 'actual', 'loss'])
    fig = interp.plot_activations()                        # no vocab: the caption still reads predicted/actual/loss
    caption = fig.subfigs[0]._suptitle.get_text()
    assert caption.startswith(f"item {int(cb.idxs[0])}: ") and caption.count(' / ')==1, caption
    plt.close(fig)

def test_keypoints_fail_clearly_before_any_step():
    dls0 = digit_dls(n_train=32, n_valid=16, seed=0, task='regression', bs=8)
    df = dls0.scenes.reset_index(drop=True)
    df['point'] = df.boxes.map(lambda b: [((b[0][0]+b[0][2])/2, (b[0][1]+b[0][3])/2)])
    dls = DataBlock(blocks=(ImageBlock(PILImageBW), PointBlock), get_x=ColReader('fname', pref=f"{dls0.path}/"),
                    get_y=lambda r: np.array(r.point, dtype=np.float32), splitter=ColSplitter('is_valid')).dataloaders(df, bs=8, num_workers=0)
    steps = CountSteps()
    learn = Learner(dls, digit_cnn(2), loss_func=MSELossFlat(), cbs=[GradCAMCallback(), steps])
    with pytest.raises(TypeError, match='keypoints'): fit_quietly(learn, epochs=1)
    assert steps.steps == 0 and not hooks_on(learn.model)

def test_a_model_fastcam_cannot_explain_fails_before_any_step():
    "An autoencoder: images in, images out"
    dls = digit_dls(n_train=32, n_valid=16, seed=0, task='regression', bs=8)
    class AE(nn.Module):
        def __init__(self): super().__init__(); self.body = nn.Conv2d(1, 4, 3, padding=1); self.head = nn.Conv2d(4, 1, 3, padding=1)
        def __getitem__(self, i): return [self.body, self.head][i]
        def forward(self, x): return self.head(self.body(x))
    steps = CountSteps()
    learn = Learner(dls, AE(), loss_func=MSELossFlat(), cbs=[GradCAMCallback(), steps])
    with pytest.raises(TypeError, match='fastcam explains image classifiers, multi-label classifiers, segmentation and regression'):
        fit_quietly(learn, epochs=1)
    assert steps.steps == 0 and not hooks_on(learn.model)

# ---------------------------------------------------------------- torch.compile
def test_a_compiled_model_is_explained_as_the_model_inside_it(trained):
    learn = digits_learner(cbs=GradCAMCallback(k=5), n_train=96, n_valid=32)
    model = learn.model
    learn.model = torch.compile(model)
    fit_quietly(learn, epochs=1)
    cb = learn.grad_cam
    fct.test_close(cb.cam_actual, grad_cam(model, cb.inputs, cb.cam_actual_for), eps=1e-4)   # the uncompiled model's maps
    fct.test_close(cb.mean_maps, mean_activation(model, cb.inputs), eps=1e-4)
    same_as_fastai(learn, 5)
    assert not hooks_on(model) and cb.hooked_layer is model[0]
    assert cb.interpretation().plot_top_losses_cam(k=2)
    plt.close('all')

# ---------------------------------------------------------------- nothing left behind on any error
TRAIN_EVENTS = ['before_fit', 'before_epoch', 'before_train', 'before_batch', 'after_pred', 'after_loss', 'before_backward',
                'after_backward', 'after_step', 'after_batch', 'after_train', 'before_validate', 'after_validate', 'after_epoch']
VALID_EVENTS = ['before_batch', 'after_pred', 'after_loss', 'after_batch']

class RaiseAt(Callback):
    "Raise at event `at`, in the training phase, or (`phase='valid'`) in the validation phase"
    def __init__(self, at, phase): self.at,self.phase = at,phase
    def __getattr__(self, n):
        if n == self.at: return self._raise
        return super().__getattr__(n)
    def _raise(self):
        if self.phase=='valid' and self.training: return
        raise RuntimeError('boom')

@pytest.mark.parametrize('at,phase', [(e, 'train') for e in TRAIN_EVENTS] + [(e, 'valid') for e in VALID_EVENTS])
def test_no_hook_left_after_an_exception_from_any_event(at, phase):
    learn = digits_learner(cbs=GradCAMCallback(k=3), n_train=32, n_valid=16, bs=16)
    with pytest.raises(RuntimeError, match='boom'): fit_quietly(learn, epochs=1, cbs=RaiseAt(at, phase))
    assert not hooks_on(learn.model)
    learn.remove_cb(learn.grad_cam)                       # the learner still trains and validates without it
    assert finishes(lambda: fit_quietly(learn, epochs=1)) and finishes(learn.validate)
    assert learn.recorder.values and not hooks_on(learn.model)
