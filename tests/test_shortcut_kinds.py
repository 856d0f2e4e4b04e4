"Issue 34: shortcuts without a place (a frame, a background, a colour cast, softer images) are flagged with their kind; clean models nowhere."
import re, pytest, torch, pandas as pd, matplotlib.pyplot as plt
from fastcam.all import *

cues = {'frame': 'border', 'background': 'background', 'blur': 'sharpness', 'colour': 'colour'}

@pytest.fixture(scope='module', params=list(cues))
def planted(request):
    "The digit CNN on scenes where every 3 carries the cue, and half of the 3s show another digit: the cue is the one that always holds"
    learn = digit_learner(shortcut=dict(label='3', cue=request.param, decoys=0.5), cbs=GradCAMCallback())
    learn.validate()
    interp = learn.grad_cam.interpretation()
    return request.param, interp, interp.find_shortcuts()

def test_the_class_is_flagged_with_the_kind_of_its_cue_and_nothing_else(planted):
    cue,_,df = planted
    flagged = df[df.flagged]
    assert list(zip(flagged['class'], flagged.kind)) == [('3', cues[cue])], df[['class', 'kind', 'flagged', 'reliance']].head(4)
    r = flagged.iloc[0]
    assert r.region is None and r.found_by == 'probe' and r.reliance >= 0.5
    assert r.removed_accuracy <= 0.5 if cue!='blur' else pd.isna(r.removed_accuracy)   # a blur can't be removed: judged by giving it
    assert r.why.startswith('Shortcut:') and "3's training images" in r.why
    if cue=='colour': assert 'redder cast' in r.why                           # the cast planted: warmer
    if cue=='blur': assert 'softer' in r.why
    if cue!='colour': assert 'Not tested: colour (a one-channel image has no colour)' in r.why

def test_the_figure_and_the_report_show_the_image_without_its_property(planted, tmp_path):
    cue,interp,df = planted
    fig = interp.plot_class_maps(classes=['3', '5'])
    titles = [ax.get_title() for ax in fig.axes]
    after = [t for t in titles if t.startswith(f"3 without its {cues[cue]}")]
    assert len(after) == 1 and any('FLAGGED: relies on its ' + cues[cue] in t for t in titles)
    ax = fig.axes[titles.index(after[0])]
    assert ax.get_images() and ax.get_images()[0].get_array().shape[:2] == (64, 64)   # an image is drawn there
    plt.close(fig)
    page = interp.cam_report(tmp_path/'r.html', k=2, method='gradcam').read_text()
    section = page[page.index('<h2>Where the model looks, class by class</h2>'):]
    assert re.search(r'<p class="flag"><b>3</b>: Shortcut:', section) and f'<td>{cues[cue]}</td>' in section

@pytest.mark.parametrize('seed', [1, 2])
def test_clean_digit_models_of_other_seeds_are_flagged_nowhere(seed):
    learn = digit_learner(seed=seed, cbs=GradCAMCallback())
    learn.validate()
    df = learn.grad_cam.interpretation().find_shortcuts(seed=seed)
    assert not df.flagged.any(), df[['class', 'kind', 'region', 'reliance', 'reliance_se']].head(3)
