"Issue 36: the methods a pytorch-grad-cam user reaches for, equal to its maps on the same layer, input and target."
import pytest, torch, torch.nn.functional as F
import fastcore.test as fct
from pytorch_grad_cam import (EigenGradCAM, GradCAMElementWise, KPCA_CAM, FEM, ShapleyCAM, FinerCAM, FullGrad, GradCAM)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection, get_2d_projection_kernel
from pytorch_grad_cam.utils.image import scale_cam_image
from fastcam.all import *
from test_methods import resnet, setup, normalized, leaf_and_grads

PGC = {'eigengradcam': EigenGradCAM, 'gradcam-elementwise': GradCAMElementWise, 'kpcacam': KPCA_CAM, 'fem': FEM, 'shapleycam': ShapleyCAM}

@pytest.fixture(params=['trained', 'resnet'])
def learner(request): return request.getfixturevalue(request.param)

def theirs(cls, model, x, t, size, targets=True):
    "pytorch-grad-cam's map at the layer's resolution `size` (w, h), min-max normalized by it"
    c = cls(model=model, target_layers=[model[0]])
    base = getattr(c, 'base_cam', c)
    base.get_target_width_height = lambda inp: size
    try: return torch.from_numpy(c(input_tensor=x, targets=[ClassifierOutputTarget(int(i)) for i in t] if targets else None))
    finally: base.activations_and_grads.release()

@pytest.mark.parametrize('method', ['gradcam-elementwise', 'fem', 'shapleycam'])
def test_deterministic_methods_equal_pytorch_grad_cam(learner, method):
    model,x,t = setup(learner, 8)
    ours = cam(model, x, t, method)
    assert ours.any() or (method=='fem' and ours.shape[1:]==(2, 2))      # FEM on 4 cells: none is 2 standard deviations above the mean
    fct.test_close(normalized(ours), theirs(PGC[method], model, x, t, ours.shape[:0:-1]), eps=1e-4)

def test_finercam_equals_pytorch_grad_cams_for_the_predicted_class(learner):
    model,x,t = setup(learner, 8)
    ours = cam(model, x, t, 'finercam')
    fct.test_close(normalized(ours), theirs(FinerCAM, model, x, t, ours.shape[:0:-1], targets=False), eps=1e-4)
    assert (normalized(ours) - normalized(cam(model, x, t, 'gradcam'))).abs().max() > 1e-2          # not Grad-CAM

@pytest.mark.parametrize('method,project', [('eigengradcam', lambda a,g: get_2d_projection((g*a).numpy())),
                                            ('kpcacam', lambda a,g: get_2d_projection_kernel(a.numpy()))])
def test_principal_components_equal_pytorch_grad_cams_but_for_their_sign(learner, method, project):
    model,x,t = setup(learner, 8)
    ours = cam(model, x, t, method)
    a,g = leaf_and_grads(model, x, t)
    proj = torch.from_numpy(project(a, g)).float()                     # theirs, before the ReLU: sign arbitrary
    ref = (g*a).sum(1) if method=='eigengradcam' else a.mean(1)
    agree = (proj*ref).flatten(1).sum(1) >= 0
    fct.test_close(normalized(ours), normalized(F.relu(torch.where(agree[:, None, None], proj, -proj))), eps=1e-3)
    th = theirs(PGC[method], model, x, t, ours.shape[:0:-1])
    fct.test_close(normalized(ours)[agree], th[agree], eps=1e-3)       # where their sign agrees, their map

def test_fullgrad_equals_pytorch_grad_cams_at_the_inputs_resolution(learner):
    model,x,t = setup(learner, 4)
    ours = cam(model, x, t, 'fullgrad')
    fct.test_eq(ours.shape, (4, *x.shape[-2:]))
    c = FullGrad(model=model, target_layers=[])
    try: th = torch.from_numpy(c(input_tensor=x, targets=[ClassifierOutputTarget(int(i)) for i in t]))
    finally: c.activations_and_grads.release()
    fct.test_close(torch.from_numpy(scale_cam_image(ours.numpy())), th, eps=1e-3)

def test_several_layers_fused_as_pytorch_grad_cam_fuses_them(trained):
    model,x,t = setup(trained, 6)
    layers = [model[0][2], model[0][4]]
    ours = cam(model, x, t, 'gradcam', layer=layers)
    fct.test_eq(ours.shape, (6, *x.shape[-2:]))
    c = GradCAM(model=model, target_layers=layers)
    try: th = torch.from_numpy(c(input_tensor=x, targets=[ClassifierOutputTarget(int(i)) for i in t]))
    finally: c.activations_and_grads.release()
    fct.test_close(ours, th, eps=1e-4)
    one = cam(model, x, t, 'gradcam', layer=[model[0][4]])              # one layer in a list: its map at the input's size, in [0, 1]
    fct.test_close(one, at_input(at_input(cam(model, x, t, 'gradcam', layer=model[0][4]), x.shape[-2:]), x.shape[-2:]), eps=1e-6)
    assert (one.flatten(1).amax(1) > 0.999).all()

def test_aug_smooth_and_eigen_smooth_as_pytorch_grad_cam(learner):
    model,x,t = setup(learner, 4)
    targets = [ClassifierOutputTarget(int(i)) for i in t]
    ours = cam(model, x, t, 'gradcam', aug_smooth=True)
    c = GradCAM(model=model, target_layers=[model[0]])
    try:
        th = torch.from_numpy(c(input_tensor=x, targets=targets, aug_smooth=True))
        size = cam(model, x, t, 'gradcam').shape[:0:-1]
        c.get_target_width_height = lambda inp: size
        th_eigen = torch.from_numpy(c(input_tensor=x, targets=targets, eigen_smooth=True))
    finally: c.activations_and_grads.release()
    fct.test_close(ours, th, eps=1e-4)
    eig = normalized(cam(model, x, t, 'gradcam', eigen_smooth=True))
    a,g = leaf_and_grads(model, x, t)
    wa = g.mean((2, 3), keepdim=True)*a
    proj = torch.from_numpy(get_2d_projection(wa.numpy()))
    agree = (proj*wa.sum(1)).flatten(1).sum(1) >= 0
    fct.test_close(eig[agree], th_eigen[agree], eps=1e-3)               # the same, where their SVD's sign agrees with the channel sum
    assert (eig - normalized(cam(model, x, t, 'gradcam'))).abs().max() > 1e-3

def test_road_equals_pytorch_grad_cams_on_the_same_maps(trained):
    from pytorch_grad_cam.metrics.road import ROADMostRelevantFirst, ROADLeastRelevantFirst
    model,x,t = setup(trained, 4)
    maps = at_input(cam(model, x, t, 'gradcam'), x.shape[-2:])
    targets = [ClassifierOutputTarget(int(i)) for i in t]
    for p,most,Theirs in ((80, True, ROADMostRelevantFirst), (20, False, ROADLeastRelevantFirst)):
        torch.manual_seed(0); th = torch.from_numpy(Theirs(percentile=p)(x, maps.numpy(), targets, model))
        torch.manual_seed(0); ours = road(model, x, maps, t, p, most)
        fct.test_close(ours, th, eps=1e-3)
    s = road_scores(model, x, maps, t)
    assert set(s) == {'road', 'road_morf', 'road_lerf'} and (s['road'] == (s['road_lerf']-s['road_morf'])/2).all()

def test_rank_methods_by_road_and_cam_scores_with_it(trained):
    interp = trained.grad_cam.interpretation()
    r = interp.rank_methods(score='road', methods=['gradcam', 'hirescam'])
    assert {'road', 'score'} <= set(r.columns) and (r.score == r.road).all() and list(r.score) == sorted(r.score, reverse=True)
    df = interp.cam_scores(k=2, methods=['gradcam', 'fem'], metrics=['deletion', 'road', 'road_morf'])
    assert {'road', 'road_morf'} <= set(df.columns) and len(df) == 2*2 and df.road.notna().all()
    with pytest.raises(ValueError, match="'insertion-deletion' or 'road'"): interp.rank_methods(score='roads')

def test_the_callback_fuses_layers_when_the_maps_are_read():
    from conftest import digits_learner, fit_quietly, hooks_on
    learn = digits_learner(n_train=128, n_valid=64)
    layers = [learn.model[0][2], learn.model[0][4]]
    fit_quietly(learn.add_cb(GradCAMCallback(k=5, layer=layers)), epochs=1)
    cb = learn.grad_cam
    fct.test_eq(cb.history[-1]['top']['maps']['gradcam']['actual'].shape, (5, 64, 64))    # fit's passes: fused when recorded
    with learn.no_bar(): learn.validate()
    assert not cb.capture.maps_made                                   # validate(): the pass kept no layer's output, fused when read
    x,t = cb.inputs, cb.targs
    fct.test_eq(cb.cam_actual.shape, (5, *x.shape[-2:]))
    fct.test_close(cb.cam_actual, cam(learn.model, x, t, 'gradcam', layer=layers), eps=1e-4)
    fct.test_eq(cb.capture.layer, 'model[0][2] + model[0][4]')
    assert not hooks_on(learn.model)
    item = learn.dls.valid_ds[int(cb.idxs[0])][0]
    p = learn.predict_cam(item)                                       # one input: fused as the callback fuses
    xb = learn.dls.test_dl([item]).one_batch()[0]
    fct.test_close(p.cam, cam(learn.model, xb, [int(p.index)], 'gradcam', layer=layers)[0], eps=1e-4)
    fct.test_eq(p.about['layer'], 'model[0][2] + model[0][4]')
    from fastai.interpret import ClassificationInterpretation
    fig = ClassificationInterpretation.from_learner(learn).plot_top_losses_cam(k=3)
    assert 'model[0][2] + model[0][4]' in fig._suptitle.get_text()
    with pytest.raises(TypeError, match='pass modules'): GradCAMCallback(layer=[learn.model[0][2], 'auto'])
    with pytest.raises(ValueError, match='names no layer'): GradCAMCallback(layer=[])
    with pytest.raises(ValueError, match='over its tokens'): cam(learn.model, torch.zeros(2, 5, dtype=torch.long), [0, 0], layer=layers)

def test_every_method_makes_the_same_maps_inside_a_validation_pass(trained):
    "fit's passes make their maps under `torch.no_grad()`: each method must still find its gradients"
    model,x,t = setup(trained, 2)
    outside = cam(model, x, t, list(cam_methods))
    with torch.no_grad(): inside = cam(model, x, t, list(cam_methods))
    for m in cam_methods: fct.test_close(inside[m], outside[m], eps=1e-5)

def test_methods_of_the_activations_alone_stop_the_forward_at_the_layer(trained):
    model,x,t = setup(trained, 3)
    acts_only = [m for m,f in cam_methods.items() if f.uses=='acts']
    calls = []
    h = model[1].register_forward_hook(lambda *a: calls.append(1))
    try: alone = cam(model, x, t, acts_only)
    finally: h.remove()
    assert not calls                                                  # the head never ran
    with_grads = cam(model, x, t, [*acts_only, 'gradcam'])            # a full forward and a backward
    for m in acts_only: fct.test_close(alone[m], with_grads[m], eps=1e-6)
