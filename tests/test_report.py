"Issue 14: a self-contained HTML report, escaped, checked in headless Chromium"
import json, re, shutil, subprocess, sys
import pytest, torch
import fastcore.test as fct
from fastai.vision.all import (DataBlock, ImageBlock, CategoryBlock, PILImageBW, IndexSplitter, Learner, accuracy, set_seed,
                               ClassificationInterpretation)
from fastcam.all import *
from conftest import digits_learner, fit_quietly

CHROMIUM = next((shutil.which(c) for c in ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable') if shutil.which(c)), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: `apt-get install chromium`; "
                                    ".ci/run installs it)")
EVIL = '<script>console.error("injected")</script>'

@pytest.fixture(scope='module')
def report(trained, tmp_path_factory):
    "The report of the shared learner (captured with history), with scores"
    interp = trained.grad_cam.interpretation()
    path = interp.cam_report(tmp_path_factory.mktemp('r')/'report.html', k=9, methods=['hirescam', 'gradcam++'], scores=True)
    return interp, path, path.read_text(encoding='utf-8')

def test_report_is_one_self_contained_file(report):
    interp, path, html = report
    srcs = re.findall(r'\bsrc="([^"]*)"', html)
    assert srcs and all(s.startswith('data:image/png;base64,') for s in srcs)
    assert not re.search(r'\b(href|src)\s*=\s*"(https?:)?//', html) and '@import' not in html and 'url(' not in html
    fct.test_eq(html.count('class="tile"'), 9)
    # every tile: the main image and one map per method (mean, Grad-CAM, HiResCAM, Grad-CAM++)
    fct.test_eq(len(re.findall(r'<figure>', html)), 9*4)

def test_report_holds_captions_table_confusions_history_and_scores(report, trained):
    interp, path, html = report
    table = interp.top_losses_table(9)
    vocab = trained.dls.vocab
    for r in table.itertuples():
        assert f"{r.predicted}/{r.actual} / {r.loss:.2f} / " in html                # the tile's caption
        assert f'data-index="{r.index}"' in html
    fct.test_eq(html.count('<tr>', html.index('id="top_losses"'), html.index('</table>', html.index('id="top_losses"'))), 10)
    for a,p,n in interp.most_confused(min_val=1)[:3]: assert f'<td>{a}</td><td>{p}</td><td class="num" data-v="{float(n)!r}">{n}</td>' in html
    for h in ['Model and data', 'Most confused classes', 'History across epochs', 'Faithfulness scores']: assert f'<h2>{h}</h2>' in html
    assert 'Sequential, ' in html and 'parameters' in html and 'CrossEntropyLoss' in html
    assert html.count('id="history"')==1 and html.count('id="scores"')==1

@pytest.fixture(scope='module')
def evil_learner():
    "A learner whose class names and file names are HTML"
    dls = digit_dls(n_train=96, n_valid=32, seed=0, bs=16)
    names = {str(i): (EVIL if i==0 else f'a&b <i>{i}</i>') for i in range(10)}
    items = dls.train.items + dls.valid.items
    db = DataBlock(blocks=(ImageBlock(PILImageBW), CategoryBlock), get_y=lambda p: names[p.parent.name],
                   splitter=IndexSplitter(range(len(dls.train.items), len(items))))
    edls = db.dataloaders(items, bs=16, num_workers=0)
    set_seed(0)
    learn = Learner(edls, digit_cnn(edls.c), metrics=accuracy, cbs=GradCAMCallback(k=4))
    return fit_quietly(learn, epochs=1)

def test_class_names_are_text_never_html(evil_learner, tmp_path):
    interp = evil_learner.grad_cam.interpretation()
    html = interp.cam_report(tmp_path/'r.html', k=4).read_text()
    assert EVIL not in html and '<i>' not in html
    assert '&lt;script&gt;console.error(&quot;injected&quot;)&lt;/script&gt;' in html and 'a&amp;b &lt;i&gt;' in html

PROBE_HEAD = ("<script>window.__errs=[];window.addEventListener('error',e=>__errs.push(String(e.message)));"
              "const _ce=console.error;console.error=function(){__errs.push(Array.from(arguments).join(' '));_ce.apply(console,arguments)};</script>")
PROBE_BODY = ("<script>window.addEventListener('load',()=>{const t=[...document.querySelectorAll('.tile img.main')];"
              "document.body.setAttribute('data-probe',JSON.stringify({tiles:document.querySelectorAll('.tile').length,"
              "loaded:t.filter(i=>i.complete&&i.naturalWidth>0).length,images:document.images.length,"
              "all_loaded:[...document.images].every(i=>i.complete&&i.naturalWidth>0),errs:__errs}))})</script>")

def open_in_chromium(path, tmp_path):
    "Load `path` in headless Chromium: what the page reports after loading, its console lines, and a screenshot"
    probed = tmp_path/'probed.html'
    html = path.read_text(encoding='utf-8')
    probed.write_text(html.replace('<head>', '<head>'+PROBE_HEAD, 1).replace('</body>', PROBE_BODY+'</body>', 1), encoding='utf-8')
    args = [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--virtual-time-budget=5000']
    r = subprocess.run(args+['--enable-logging=stderr', '--v=0', '--dump-dom', probed.as_uri()], capture_output=True, text=True, timeout=120)
    m = re.search(r'data-probe="([^"]*)"', r.stdout)
    assert m, f"the page did not finish loading in Chromium: {r.stderr[-2000:]}"
    import html as h
    probe = json.loads(h.unescape(m.group(1)))
    console = [l for l in r.stderr.splitlines() if ':CONSOLE' in l]
    shot = tmp_path/'shot.png'
    subprocess.run(args+['--window-size=1280,1400', f'--screenshot={shot}', path.as_uri()], capture_output=True, timeout=120)
    return probe, console, shot

@needs_chromium
@pytest.mark.parametrize('which', ['digits', 'evil'])
def test_report_in_headless_chromium(which, report, evil_learner, tmp_path):
    if which=='digits': path,k = report[1],9
    else: path,k = evil_learner.grad_cam.interpretation().cam_report(tmp_path/'evil.html', k=4),4
    probe, console, shot = open_in_chromium(path, tmp_path)
    fct.test_eq(probe['tiles'], k); fct.test_eq(probe['loaded'], k)
    assert probe['all_loaded'] and probe['images'] >= k
    fct.test_eq(probe['errs'], []); fct.test_eq(console, [])          # no script error, nothing injected ran
    import matplotlib.image as mpimg
    img = mpimg.imread(shot)[..., :3]
    assert img.shape[:2]==(1400, 1280)
    assert img.std() > 0.05 and (img.mean(-1) < 0.9).mean() > 0.05   # not blank: images and text drawn

def test_cli_report_html(trained, tmp_path):
    from fastcam.cli import main
    trained.path = tmp_path
    trained.export('m.pkl')
    folder = trained.dls.valid.items[0].parent.parent
    fct.test_eq(main(['report', str(tmp_path/'m.pkl'), str(folder), '--k', '3', '--out', str(tmp_path/'o'), '--html']), 0)
    html = (tmp_path/'o'/'report.html').read_text()
    fct.test_eq(html.count('class="tile"'), 3)
