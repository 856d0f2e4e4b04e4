"Issue 35: the web page, used from headless Chromium as a person would: an upload, other choices, every bad input; nothing from the internet."
import shutil, socket, time, warnings, pytest, numpy as np
from pathlib import Path
from PIL import Image
from fastcam.all import *
from fastcam.webapp import app, explain_input

pytest.importorskip('gradio', reason='the app extra: pip install "fastcam[app]" (in the dev extra)')
sync_api = pytest.importorskip('playwright.sync_api', reason='Playwright for Python (in the dev extra)')
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')

def free_port()->int:
    s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()
    return port

def port_open(port)->bool:
    with socket.socket() as s: return s.connect_ex(('127.0.0.1', port))==0

@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('uploads')
    Image.fromarray(digit_scenes(1, seed=11, held_out=True).image[0]).save(d/'scene.png')
    (d/'notes.txt').write_text('a text, for an image model')
    (d/'broken.png').write_bytes(b'not a PNG at all')
    big = np.zeros((4200, 5000), np.uint8); big[1000:3000, 2000:3000] = 200
    Image.fromarray(big).save(d/'big.png')                                  # 21 MP
    return d

@pytest.fixture(scope='module')
def served(files):
    "The digit CNN's page on a free localhost port, and a headless Chromium on it; everything stopped afterwards"
    if CHROMIUM is None: pytest.skip("headless Chromium is not installed (Debian: `apt-get install chromium`; .ci/run installs it)")
    learn,port = digit_learner(),free_port()
    page_app = app(learn, port=port, prevent_thread_lock=True)
    hosts = set()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox', '--disable-gpu', '--disable-background-networking'])
        page = browser.new_page()
        page.on('request', lambda r: hosts.add(r.url.split('/')[2]) if '://' in r.url and not r.url.startswith(('data:', 'blob:')) else None)
        page.goto(f'http://127.0.0.1:{port}/')
        page.get_by_text('Where does the model look?').wait_for()
        yield learn,page,port,hosts
        browser.close()
    page_app.close()
    assert not port_open(port)                                              # nothing left running

def upload(page, path):
    "Upload `path` as a person would: the file before it cleared first (the × of the file box)"
    clear = page.locator('#upload button[aria-label="Clear"]')
    if clear.count():
        clear.first.click()
        message(page, 'Upload an image first')                             # the page answers the cleared box too
    page.set_input_files('#upload input[type=file]', str(path))

def message(page, expect:str, timeout=60000)->str:
    page.locator('#message').get_by_text(expect).wait_for(timeout=timeout)
    return page.locator('#message').inner_text()

def test_an_upload_shows_the_top_classes_and_the_map(served, files):
    learn,page,port,hosts = served
    page.get_by_role('button', name='Explain').click()                     # nothing uploaded yet
    assert 'Upload an image first' in message(page, 'Upload an image first')
    t = time.perf_counter()
    upload(page, files/'scene.png')
    text = message(page, 'Predicted')
    print(f"upload to answer, seen from the browser: {time.perf_counter()-t:.2f} s")
    want = learn.predict_cam(files/'scene.png')
    assert text.startswith(f"Predicted {want[0]}.") and 'Grad-CAM of model[0]' in text
    top = page.locator('#top').inner_text().splitlines()[1:]               # after its label: the top class, then (class, %) three times
    p = want[2].topk(3)
    assert top[0] == str(want[0]) and top[1::2][:3] == [str(learn.dls.vocab[int(i)]) for i in p.indices]   # the top 3, likeliest first
    assert top[2] == f"{float(p.values[0]):.0%}"
    img = page.locator('#map img')
    img.first.wait_for()
    assert img.first.evaluate('i => i.naturalWidth') > 100                 # the map over the image, drawn
    page.screenshot(path=str(files/'app.png'), full_page=True)

def test_another_class_and_another_method(served, files):
    learn,page,_,_ = served
    page.get_by_label('Map of the class').click(); page.get_by_role('option', name='3', exact=True).click()
    assert 'for 3.' in message(page, 'for 3.')
    page.get_by_label('Method').click(); page.get_by_role('option', name='HiResCAM').click()
    assert 'HiResCAM of model[0] for 3.' in message(page, 'HiResCAM')

@pytest.mark.parametrize('name,expect', [('notes.txt', 'not an image this page can read'), ('broken.png', 'not an image this page can read'),
                                         ('big.png', 'scaled down to'), ('scene.png', 'Predicted')],
                         ids=['a text file', 'a broken image', 'a very large image', 'and then a good one again'])
def test_bad_uploads_get_a_message_and_the_page_keeps_serving(served, files, name, expect):
    _,page,_,_ = served
    page.get_by_label('Map of the class').click(); page.get_by_role('option', name='predicted').click()
    upload(page, files/name)
    assert expect in message(page, expect)

def test_nothing_is_fetched_from_the_internet(served):
    _,_,port,hosts = served
    assert hosts == {f'127.0.0.1:{port}'}, hosts

def test_the_function_behind_the_page_converts_and_refuses_as_the_page_says(files):
    rgb = digit_learner(shortcut=dict(label='3', cue='colour', decoys=0.5))   # a colour model, given a grayscale image
    labels,fig,msg = explain_input(rgb, files/'scene.png')
    assert msg.startswith('Predicted') and len(labels) == 3 and fig.ndim == 3
    assert 'not texts' in explain_input(digit_learner(), None, 'a review of a film')[2]
    text = text_learner(epochs=1)
    assert 'Type a text first' in explain_input(text, None, '  ')[2]
    labels,fig,msg = explain_input(text, None, 'the film was superb')
    assert msg.startswith('Predicted') and fig is not None
