"The first hour (issue 21): a front page, a docs site, figures that read right, and nothing that surprises."
import json, re, shutil, subprocess, sys, os, textwrap
from pathlib import Path
import pytest, matplotlib.pyplot as plt
import fastcore.test as fct
from fastcam.all import *
from conftest import digits_learner, fit_quietly

ROOT = Path(__file__).parent.parent
CHROMIUM = next((shutil.which(c) for c in ('chromium', 'chromium-browser', 'google-chrome') if shutil.which(c)), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: `apt-get install chromium`; "
                                    ".ci/run installs it)")

# ---------------------------------------------------------------- the front page
def readme(): return (ROOT/'README.md').read_text()

def test_readme_is_a_front_page_with_the_two_commands_in_its_first_screen():
    text = readme()
    words = len(re.sub(r'```.*?```', ' ', text, flags=re.S).split())        # prose, not the code and output blocks
    assert words <= 1000, f"README has {words} words of prose"
    first = '\n'.join(text.splitlines()[:45])
    assert 'pip install -e . && fastcam demo' in first                      # installs and runs the demo
    assert 'bash .ci/run' in first                                         # installs and runs the tests
    ci = (ROOT/'.ci'/'run').read_text()
    assert 'nbdev-test' in ci and 'python -m pytest' in ci                 # ... the same command CI runs
    assert re.search(r'!\[[^\]]*\]\(docs/demo_top_losses\.png\)', text)    # one picture
    assert 'mkdocs' in text and 'docs/guide.md' in text                     # the docs, and how to build them

def test_readme_snippets_build_their_own_dataloaders_and_cover_every_task():
    code = '\n'.join(re.findall(r'```python\n(.*?)```', readme(), flags=re.S))
    assert 'digit_dls(' in code and 'GradCAMCallback(' in code
    for what in ("task='segmentation'", "task='regression'", 'unet_learner', 'plot_top_losses_cam'): assert what in code, what

def test_readme_numbers_say_which_versions_and_machine_made_them():
    block = readme()[readme().index('Accuracy (digit scenes'):]
    block = block[:block.index('```')]
    assert re.search(r'Made with fastcam \S+, fastai \S+, torch \S+, Python \S+', block)
    assert re.search(r'Took \d+ s', block)

# ---------------------------------------------------------------- the docs site
@pytest.fixture(scope='module')
def site():
    "The docs site, built by `mkdocs build --strict` (CI builds it before the tests; else it is built here)"
    if not (ROOT/'site'/'index.html').exists():
        r = subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '--strict'], cwd=ROOT, capture_output=True, text=True,
                           env=dict(os.environ, NO_MKDOCS_2_WARNING='1'))
        assert r.returncode == 0, r.stderr[-3000:]
    return ROOT/'site'

def test_the_site_has_every_notebook_the_guide_and_the_api(site):
    for nb in sorted((ROOT/'nbs').glob('[0-9][0-9]_*.ipynb')):
        if nb.stem != '14_main': assert (site/nb.stem/'index.html').exists(), nb.stem
    api = (site/'api'/'index.html').read_text()
    for name in ('GradCAMCallback', 'pick_layer', 'rank_methods', 'TopK', 'detect_task'): assert name in api, name
    assert 'The house, layer by layer' in (site/'index.html').read_text()     # the docs open with the layers

PROBE = ("<script>window.addEventListener('load',()=>{const im=[...document.images];document.body.setAttribute('data-probe',"
         "JSON.stringify({images:im.length,figures:im.filter(i=>i.src.startsWith('data:image/png')&&i.complete&&i.naturalWidth>100).length}))})</script>")

@needs_chromium
@pytest.mark.parametrize('page', ['index.html', '04_plots/index.html', '05_history/index.html'])
def test_a_docs_page_shows_its_figures_in_headless_chromium(site, page, tmp_path):
    probed = site/page.replace('index.html', 'probed.html')
    probed.write_text((site/page).read_text().replace('</body>', PROBE+'</body>', 1))
    try:
        r = subprocess.run([CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--virtual-time-budget=5000', '--dump-dom',
                            probed.as_uri()], capture_output=True, text=True, timeout=120)
    finally: probed.unlink()
    m = re.search(r'data-probe="([^"]*)"', r.stdout)
    assert m, r.stderr[-2000:]
    import html
    probe = json.loads(html.unescape(m.group(1)))
    assert probe['figures'] >= 1, probe                                    # the notebook's figures, drawn in the page

# ---------------------------------------------------------------- figures that read right
def test_plot_cam_history_keeps_its_title_clear_and_each_caption_with_its_image():
    learn = fit_quietly(digits_learner(cbs=GradCAMCallback(k=3), n_train=96, n_valid=32), epochs=3)
    fig = learn.grad_cam.plot_cam_history()
    fig.canvas.draw()
    r,inv = fig.canvas.get_renderer(),fig.transFigure.inverted()
    sup = fig._suptitle.get_window_extent(r).transformed(inv)
    axs = [ax for ax in fig.axes if ax.get_images()]
    first_row_top = max(ax.title.get_window_extent(r).transformed(inv).y1 for ax in axs[:3])
    assert sup.y0 >= first_row_top, (sup.y0, first_row_top)                # the title does not overlap the first captions
    for ax in axs:
        img = ax.get_window_extent(r).transformed(inv)
        cap = ax.title.get_window_extent(r).transformed(inv)
        assert cap.y0 >= img.y1 - 1e-3                                      # the caption sits right above its own image
        assert img.x0 <= (cap.x0+cap.x1)/2 <= img.x1, ax.title.get_text()   # ... centred over it, not over its neighbour
        for t in ax.texts:
            if t.get_text().startswith('item '): continue                 # the row's name, on the left
            b = t.get_window_extent(r).transformed(inv)
            assert b.y0 >= img.y0 - 1e-3 and b.y1 <= img.y1 + 1e-3, t.get_text()   # nothing under an image
    plt.close(fig)

def test_the_report_reads_the_version_when_a_fastcam_folder_shadows_the_package(tmp_path):
    "A script run from the folder that holds the clone: `fastcam` there is a folder without `__init__.py`"
    (tmp_path/'fastcam').mkdir()
    script = tmp_path/'make_report.py'
    script.write_text(textwrap.dedent(f'''
        import sys, fastcam; sys.path.insert(1, {str(Path(__file__).parent)!r})
        from conftest import digits_learner, fit_quietly
        from fastcam.all import *
        learn = fit_quietly(digits_learner(cbs=GradCAMCallback(k=2), n_train=64, n_valid=16), epochs=1)
        print(learn.grad_cam.interpretation().cam_report('r.html', k=2))
    '''))
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, env=dict(os.environ, MPLBACKEND='Agg'))
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"fastcam {fastcam_version()}," in (tmp_path/'r.html').read_text()
