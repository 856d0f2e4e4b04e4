"Issue 37: a shortcut the maps don't show is found by covering each cell of a grid, and flagged at its place."
import pytest, torch, matplotlib.pyplot as plt
from fastcam.all import *
from fastcam.data import shortcut_spec, mark_box

HOLE = dict(label='7', place=(20, 20), mark='hole', size=10)       # a flat black patch near the centre, where digits often are

@pytest.fixture(scope='module')
def hidden():
    learn = digit_learner(shortcut=HOLE, cbs=GradCAMCallback())
    learn.validate()
    interp = learn.grad_cam.interpretation()
    return interp, interp.find_shortcuts(method='mean')                # the mean activation: where the layer fires, and a hole fires little

def test_the_maps_do_not_show_the_cue_but_covering_finds_it_at_its_place(hidden):
    interp,df = hidden
    x0,y0,x1,y1 = mark = mark_box(shortcut_spec(HOLE), 64)
    cm = interp_class_maps(interp, 'mean')
    seven,rest = cm.correct & (cm.labels==7),cm.correct & (cm.labels!=7)
    share = lambda rows: region_share(cm.maps[rows], mark, cm.size).mean().item()
    assert share(seven) < 2*share(rest)                                  # the class's maps don't look at the cue more than others' do
    flagged = df[df.flagged]
    assert list(zip(flagged['class'], flagged.kind)) == [('7', 'place')], df[['class', 'kind', 'found_by', 'specificity', 'reliance']].head(3)
    r = flagged.iloc[0]
    assert r.found_by == 'covering' and r.specificity < 2.0              # not a suspect of attention: found by covering
    rx0,ry0,rx1,ry1 = r.region
    assert rx0 <= (x0+x1)/2 <= rx1 and ry0 <= (y0+y1)/2 <= ry1 and (rx1-rx0)*(ry1-ry0) <= 0.0625*64*64   # one cell, holding the cue
    assert r.lost >= 0.8 and r.gained >= 0.5 and 'found by covering, not by its maps' in r.why

def test_the_figure_shows_the_covering_map_of_a_class_flagged_that_way(hidden):
    interp,df = hidden
    fig = interp.plot_class_maps(classes=['7', '1'], method='mean')
    titles = [ax.get_title() for ax in fig.axes]
    i = next(i for i,t in enumerate(titles) if t.startswith('7: covering map'))
    assert fig.axes[i].get_images() and len(fig.axes[i].get_images()) == 2   # the image, and the covering map over it
    cov = df.attrs['covering']['7']
    assert cov.shape == (4, 4) and int(cov.flatten().argmax()) == 5          # the cell (16..32, 16..32): the hole's
    plt.close(fig)
