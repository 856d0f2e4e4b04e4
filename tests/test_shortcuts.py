"Right for the right reasons (issues 26, 34, 37): a shortcut planted on one class is flagged at its place, and nothing is flagged without it."
import re, pytest, torch, matplotlib.pyplot as plt
from fastai.vision.all import Learner, vision_learner, resnet18, set_seed, accuracy_multi, MSELossFlat
from fastcam.all import *
from fastcam.data import mark_box, shortcut_spec
from conftest import hooks_on

def fit(learn, epochs, lr):
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(epochs, lr)
    return learn

def resnet(shortcut):
    set_seed(0, reproducible=True)
    dls = digit_dls(n_train=1000, n_valid=300, shortcut=shortcut)
    return fit(vision_learner(dls, resnet18, pretrained=False, n_in=1, cbs=GradCAMCallback()), 4, 3e-3)

CROSS = dict(label='2', place='bottom-right', mark='cross', size=6)
learners = {'digit CNN, a cross bottom right on 2': lambda: digit_learner(shortcut=CROSS, cbs=GradCAMCallback()),
            'digit CNN, no mark': lambda: digit_learner(cbs=GradCAMCallback()),
            'ResNet-18, a checker top left on 7': lambda: resnet('7'),
            'ResNet-18, no mark': lambda: resnet(None)}
marks = {'digit CNN, a cross bottom right on 2': CROSS, 'ResNet-18, a checker top left on 7': '7'}

@pytest.fixture(scope='module', params=list(learners))
def found(request):
    learn = learners[request.param]()
    if not learn.grad_cam.capture: learn.validate()
    interp = learn.grad_cam.interpretation()
    before = [(p.grad is None or not p.grad.any(), p.requires_grad) for p in learn.model.parameters()], [m.training for m in learn.model.modules()]
    df = interp.find_shortcuts()
    after = [(p.grad is None or not p.grad.any(), p.requires_grad) for p in learn.model.parameters()], [m.training for m in learn.model.modules()]
    assert before == after and hooks_on(learn.model) == []                      # nothing left behind
    return request.param, interp, df

def inside(point, box): return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]

def test_the_marked_class_is_flagged_at_the_mark_and_nothing_else(found):
    name,_,df = found
    flagged = df[df.flagged]
    if name not in marks:
        assert flagged.empty, flagged[['class', 'kind', 'region', 'specificity', 'reliance']]   # no mark: no flag of any kind
        return
    spec = shortcut_spec(marks[name])
    assert list(flagged['class']) == [spec['label']], df[['class', 'flagged', 'specificity', 'reliance']]
    x0,y0,x1,y1 = mark = mark_box(spec, 64)
    region = flagged.region.iloc[0]
    assert inside(((x0+x1)/2, (y0+y1)/2), region)                           # the region holds the mark ...
    assert (region[2]-region[0])*(region[3]-region[1]) <= 0.3*64*64         # ... and is a place, not the image
    row = flagged.iloc[0]
    assert row.reliance >= 0.25 and (row.lost - row.lost_others >= 0.25 or row.gained - row.gained_others >= 0.25)
    assert re.search(r"Shortcut: .* look at that place in \S+ training images", row.why)
    assert {'class', 'kind', 'flagged', 'region', 'found_by', 'reliance', 'removed_accuracy', 'why'} <= set(df.columns) and len(df) == 10
    assert row.kind == 'place' and row.found_by in ('attention', 'covering') and row.removed_accuracy <= 0.5   # without the mark, the class is lost

def test_the_figure_marks_the_flagged_class_and_says_what_it_shows(found):
    name,interp,df = found
    fig = interp.plot_class_maps()
    title = fig._suptitle.get_text()
    assert 'Where the model looks, class by class' in title and "each item's actual class" in title
    flagged_titles = [ax.get_title() for ax in fig.axes if 'FLAGGED' in ax.get_title()]
    assert len(flagged_titles) == int(df.flagged.sum())
    for c in df['class'][df.flagged]: assert flagged_titles[0].startswith(f"{c}: mean of")
    assert sum(1 for ax in fig.axes if ax.get_images()) >= 10                # every class, then strategies
    plt.close(fig)

def test_the_report_has_the_section_with_the_flags_first(found, tmp_path):
    name,interp,df = found
    page = interp.cam_report(tmp_path/'r.html', k=2, method='gradcam').read_text()
    section = page[page.index('<h2>Where the model looks, class by class</h2>'):]
    first_para = re.search(r'<p class="(flag|ok)">', section).group(1)
    assert first_para == ('flag' if df.flagged.any() else 'ok')
    assert section.index(f'class="{first_para}"') < section.index('<table')

def test_multi_label_scenes_and_tasks_without_classes():
    set_seed(0, reproducible=True)
    dls = digit_dls(n_train=2000, n_valid=500, max_digits=2, shortcut='7')
    learn = fit(Learner(dls, digit_cnn(dls.c), metrics=accuracy_multi, cbs=GradCAMCallback()), 8, 1e-2)
    df = learn.grad_cam.interpretation().find_shortcuts()
    assert list(df['class'][df.flagged]) == ['7']
    reg = digit_dls(n_train=64, n_valid=32, task='regression', bs=16)
    rlearn = Learner(reg, digit_cnn(1), loss_func=MSELossFlat(), cbs=GradCAMCallback())
    rlearn.validate()
    with pytest.raises(ValueError, match=r"regression model has none to compare.*plot_top_losses_cam"):
        rlearn.grad_cam.interpretation().find_shortcuts()
