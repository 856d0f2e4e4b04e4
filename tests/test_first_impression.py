"The first impression (issue 25): every example, figure and hint a newcomer meets works as shown."
import html as htmllib, os, re, shlex, subprocess, sys, warnings
from pathlib import Path
import pytest, torch, matplotlib.pyplot as plt
import fastcore.test as fct
from fastcam.all import *
from conftest import digits_learner
from test_first_hour import site, readme, ROOT

def run(args, cwd, timeout=900, **kw):
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ, MPLBACKEND='Agg'), **kw)
    return r.returncode, r.stdout + r.stderr

# ---------------------------------------------------------------- 1. README's example learns, as written
def test_readme_example_learns_as_written(tmp_path):
    block = next(b for b in re.findall(r'```python\n(.*?)```', readme(), flags=re.S) if 'fit_one_cycle' in b and 'cam_report' in b)
    said = float(re.search(r'accuracy about (0\.\d+)', block).group(1))        # the example says what to expect
    code,out = run([sys.executable, '-c', block + "\nprint('ACCURACY', float(learn.recorder.values[-1][-1]))\n"], tmp_path)
    assert code == 0, out[-3000:]
    acc = float(re.search(r'ACCURACY (\S+)', out).group(1))
    assert acc >= 0.85 and abs(acc - said) < 0.05, (acc, said)
    page = (tmp_path/'report.html').read_text()
    assert 'method=&#x27;auto&#x27; picked' in page or "method='auto' picked" in page

# ---------------------------------------------------------------- 2. the docs' figures come from models that learned
FIGURE = re.compile(r'<img[^>]*src="data:image/png', re.S)

def test_every_docs_figure_of_a_model_comes_after_its_accuracy(site):
    shown = 0
    for page in [site/'index.html', *sorted(site.glob('[0-9][0-9]_*/index.html'))]:
        text = page.read_text()
        code = htmllib.unescape(re.sub(r'<[^>]+>', '', text))
        if not re.search(r'\.(plot_top_losses_cam|plot_cam_methods|plot)\(', code): continue
        figures = list(FIGURE.finditer(text))
        if not figures: continue
        first = figures[-1]                                                   # the page's figure of a trained model
        said = [float(a) for a in re.findall(r'accuracy (?:by epoch: )?(?:[\d.]+, )*([01]\.\d+)', htmllib.unescape(re.sub(r'<[^>]+>', '', text[:first.start()])))]
        assert said and said[-1] >= 0.8, (page, said)                       # the model learned, and the page says so above its figure
        shown += 1
    assert shown >= 4

# ---------------------------------------------------------------- 3. no top loss is a blank
@pytest.fixture(scope='module')
def no_evidence_for_3(trained):
    "The trained learner with class 3's head weights all negative: its items are confident mistakes whose 3-map is all zero"
    learn = digits_learner(cbs=GradCAMCallback(k=4))
    learn.model.load_state_dict(trained.model.state_dict())
    with torch.no_grad(): w = learn.model[1][-1].weight; w[3] = -w[3].abs()
    learn.validate()
    return learn.grad_cam.interpretation()

def test_no_blank_panel_where_the_predicted_class_has_evidence(no_evidence_for_3, tmp_path):
    interp = no_evidence_for_3
    t = top_loss_items(interp, 4)
    blank = [i for i in range(4) if is_empty_map(t['maps']['gradcam']['actual'][i]) and not is_empty_map(t['maps']['gradcam']['predicted'][i])]
    assert len(blank) >= 2                                                  # the setup makes what the issue saw
    fig = interp.plot_top_losses_cam(k=4)
    axs = [ax for ax in fig.axes if ax.get_images()]
    for i,ax in enumerate(axs):
        top = ax.child_axes[-1] if ax.child_axes else ax                        # what covers the panel: the panel itself, or a map shown instead
        assert top.get_images()[-1].get_array().max() > 0, i                    # every panel shows a map
        label = ' '.join(x.get_text() for x in ax.texts)
        if i in blank:
            fct.test_eq(ax.get_images()[1].get_array().max(), 0)                # the map asked for is still the panel's ...
            assert label.startswith('Grad-CAM: 3 (actual): all zero') and f"{int(t['cam_pred_for'][i])} (predicted) shown instead" in label, label
    plt.close(fig)
    page = interp.cam_report(tmp_path/'r.html', k=4, method='gradcam').read_text()
    assert page.count('3 (actual) (all zero); ') >= len(blank) and page.count('(predicted) shown instead') >= len(blank)

# ---------------------------------------------------------------- 4. hints and README commands run as printed
def test_the_demo_hint_and_readme_report_commands_run_as_printed(tmp_path):
    code,out = run([sys.executable, '-m', 'fastcam', 'demo', '--epochs', '1', '--n-train', '200', '--n-valid', '60', '--k', '4'], tmp_path)
    assert code == 0, out[-3000:]
    hint = re.search(r'try: (fastcam report [^)]*)\)', out).group(1)
    code,out = run([sys.executable, '-m', 'fastcam', *shlex.split(hint)[1:]], tmp_path)
    assert code == 0, out[-3000:]
    assert "method='auto' picked" in out                                   # the same default as the demo, said aloud
    code,again = run([sys.executable, '-m', 'fastcam', *shlex.split(hint)[1:]], tmp_path)
    assert code == 0 and 'Replacing the results of the earlier `fastcam report`' in again   # a second run says so
    cmds = [l.strip() for b in re.findall(r'```bash\n(.*?)```', readme(), flags=re.S) for l in b.splitlines() if l.strip().startswith('fastcam report')]
    assert cmds
    for c in cmds:
        code,out = run([sys.executable, '-m', 'fastcam', *shlex.split(c)[1:]], tmp_path)
        assert code == 0, (c, out[-3000:])

# ---------------------------------------------------------------- 5. no warning of our own where the user has nothing to do
def test_the_usual_calls_warn_about_nothing(trained, tmp_path):
    learn = digits_learner(cbs=GradCAMCallback(k=4))
    learn.model.load_state_dict(trained.model.state_dict())
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter('always')
        learn.validate()
        interp = learn.grad_cam.interpretation()
        for kw in (dict(), dict(heatmap='both', colorbar=True), dict(method='auto', score='deletion')):
            plt.close(interp.plot_top_losses_cam(k=4, **kw))
        plt.close(interp.plot_cam_methods(k=2, methods=['gradcam', 'hirescam']))
        interp.top_losses_table(4); interp.cam_report(tmp_path/'r.html', k=4)
    ours = [str(w.message) for w in seen if '/fastcam/' in w.filename.replace(os.sep, '/')]
    assert not ours, ours

def test_the_docs_kernels_start_without_a_warning(tmp_path):
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('1+1')])
    nbformat.write(nb, tmp_path/'nb.ipynb')
    def stderr(config_path):
        env = dict(os.environ, JUPYTER_CONFIG_PATH=config_path)
        r = subprocess.run([sys.executable, '-m', 'jupyter', 'nbconvert', '--execute', '--to', 'notebook', '--output', 'out', 'nb.ipynb'],
                           cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        return r.stderr
    assert 'without encryption' in stderr(str(tmp_path))                   # what the docs build printed 15 times
    assert 'without encryption' not in stderr(str(ROOT/'docs'/'jupyter'))   # what docs/hooks.py gives its kernels

# ---------------------------------------------------------------- 6. README is a front page
def test_readme_is_about_a_thousand_words():
    n = len(readme().split())
    assert n <= 1000, f"README has {n} words"
