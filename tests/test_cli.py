import subprocess, sys, os, pytest, pandas as pd
from pathlib import Path
from PIL import Image
from fastcam.cli import main, parser

def fastcam(*args, cwd=None):
    r = subprocess.run([sys.executable, '-m', 'fastcam', *map(str, args)], capture_output=True, text=True, cwd=cwd)
    return r.returncode, r.stdout + r.stderr

@pytest.fixture(scope='module')
def demo_out(tmp_path_factory):
    "One tiny end-to-end `fastcam demo` run"
    out = tmp_path_factory.mktemp('demo')
    code,txt = fastcam('demo', '--out', out, '--epochs', 1, '--n-train', 200, '--n-valid', 60, '--k', 4)
    assert code == 0, txt
    return out, txt

def test_demo_writes_figure_table_model_and_prints_scores(demo_out):
    out,txt = demo_out
    for line in ('Accuracy', 'Pointing game, Grad-CAM', 'Pointing game, mean activation', 'Class discrimination, Grad-CAM'):
        assert line in txt
    assert Image.open(out/'top_losses.png').size[0] > 300
    df = pd.read_csv(out/'top_losses.csv')
    assert len(df) == 4 and list(df.columns) == ['index', 'item', 'predicted', 'actual', 'loss', 'p_actual']
    assert (out/'model.pkl').exists()

def test_report_on_the_demo_model(demo_out, tmp_path):
    out,_ = demo_out
    valid = Path(next(l for l in demo_out[1].splitlines() if 'fastcam report' in l).split()[-1].rstrip(')'))
    code,txt = fastcam('report', out/'model.pkl', valid, '--k', 3, '--out', tmp_path)
    assert code == 0, txt
    assert 'accuracy' in txt and len(pd.read_csv(tmp_path/'top_losses.csv')) == 3 and (tmp_path/'top_losses.png').exists()

def image_folder(root, classes, n=2):
    for c in classes:
        (root/c).mkdir(parents=True)
        for i in range(n): Image.new('L', (64, 64), 40*i).save(root/c/f'{i}.png')
    return root

def check_error(code, txt, *words):
    assert code == 2 and 'Traceback' not in txt, txt
    for w in words: assert w in txt, txt

def test_missing_model_file(tmp_path):
    check_error(*fastcam('report', tmp_path/'nope.pkl', tmp_path, '--out', tmp_path/'o'), 'no model file', 'learn.export()')

def test_unreadable_model_file(tmp_path):
    (tmp_path/'bad.pkl').write_bytes(b'not a pickle')
    check_error(*fastcam('report', tmp_path/'bad.pkl', tmp_path, '--out', tmp_path/'o'), "can't load a fastai learner")

def test_not_an_image_classifier(tmp_path):
    from fastai.vision.all import DataBlock, ImageBlock, RegressionBlock, Learner, nn
    data = image_folder(tmp_path/'data', ['1', '2'])
    dls = DataBlock((ImageBlock, RegressionBlock), get_items=lambda p: sorted(p.rglob('*.png')),
                    get_y=lambda f: float(f.parent.name)).dataloaders(data, bs=2, num_workers=0)
    learn = Learner(dls, nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1)), path=tmp_path)
    learn.export('regression.pkl')
    check_error(*fastcam('report', tmp_path/'regression.pkl', data, '--out', tmp_path/'o'), 'not an image classifier')

def test_empty_folder(demo_out, tmp_path):
    (tmp_path/'empty').mkdir()
    check_error(*fastcam('report', demo_out[0]/'model.pkl', tmp_path/'empty', '--out', tmp_path/'o'), 'no images in')

def test_class_names_that_do_not_match(demo_out, tmp_path):
    data = image_folder(tmp_path/'data', ['cat', '3'])
    check_error(*fastcam('report', demo_out[0]/'model.pkl', data, '--out', tmp_path/'o'), "['cat']", 'not classes of this model')

def test_output_dir_that_cannot_be_written(demo_out, tmp_path):
    (tmp_path/'file').write_text('x')
    data = image_folder(tmp_path/'data', ['3'])
    check_error(*fastcam('report', demo_out[0]/'model.pkl', data, '--out', tmp_path/'file'/'sub'), "can't write to the output directory")
    check_error(*fastcam('demo', '--out', tmp_path/'file'/'sub'), "can't write to the output directory")

def test_bad_option_values_and_help():
    code,txt = fastcam('demo', '--k', '0')
    assert code == 2 and 'positive integer' in txt
    code,txt = fastcam('--help')
    assert code == 0 and 'demo' in txt and 'report' in txt
    code,txt = fastcam('demo', '--help')
    for opt in ('--out', '--epochs', '--k', '--n-train', '--n-valid'): assert opt in txt
    code,txt = fastcam('report', '--help')
    assert 'only load files you trust' in ' '.join(txt.split())

def test_console_script_is_installed():
    exe = Path(sys.executable).parent/'fastcam'
    assert exe.exists()
    r = subprocess.run([exe, '--help'], capture_output=True, text=True)
    assert r.returncode == 0 and 'usage: fastcam' in r.stdout

# ---------------------------------------------------------------- issue 8: real folders, seeds, version, progress
def demo_folder(txt):
    "The validation folder the demo's output names"
    return Path(next(l for l in txt.splitlines() if 'fastcam report' in l).split()[-1].rstrip(')'))

def test_demo_says_where_its_images_are(demo_out):
    lines = [l for l in demo_out[1].splitlines() if 'images written to' in l]
    assert lines and all(list(Path(l.split('images written to ')[1].split(' (')[0]).rglob('*.png')) for l in lines)

def test_demo_with_the_same_seed_gives_the_same_numbers_table_and_figure(tmp_path):
    args = ('--epochs', 1, '--n-train', 120, '--n-valid', 40, '--k', 3, '--seed', 7, '--data', tmp_path/'data')
    runs = [fastcam('demo', '--out', tmp_path/o, *args) for o in ('a', 'b')]
    for code,txt in runs: assert code == 0, txt
    numbers = [txt[txt.index('Accuracy'):txt.index('Wrote')].splitlines() for _,txt in runs]   # scores and table
    assert len(numbers[0]) > 10 and numbers[0] == numbers[1]
    assert (tmp_path/'a'/'top_losses.csv').read_text() == (tmp_path/'b'/'top_losses.csv').read_text()
    import numpy as np
    assert np.array_equal(np.asarray(Image.open(tmp_path/'a'/'top_losses.png')), np.asarray(Image.open(tmp_path/'b'/'top_losses.png')))
    assert list((tmp_path/'data').rglob('*.png'))          # --data: the scenes are where the user asked

def test_version():
    from fastcam import __version__
    code,txt = fastcam('--version')
    assert code == 0 and txt.strip() == f"fastcam {__version__}"

def scenes_copy(demo_txt, root, n=3):
    "A few of the demo's validation images, as `root/<class>/<file>.png`"
    import shutil
    valid = demo_folder(demo_txt)
    for c in ('3', '5'):
        (root/c).mkdir(parents=True, exist_ok=True)
        for f in sorted((valid/c).glob('*.png'))[:n]: shutil.copy(f, root/c/f.name)
    return root

def test_report_skips_unreadable_images_and_names_them(demo_out, tmp_path):
    data = scenes_copy(demo_out[1], tmp_path/'data')
    (data/'3'/'garbage.png').write_bytes(b'not an image at all')
    good = sorted((data/'5').glob('*.png'))[0].read_bytes()
    (data/'5'/'truncated.png').write_bytes(good[:len(good)//2])
    code,txt = fastcam('report', demo_out[0]/'model.pkl', data, '--k', 3, '--out', tmp_path/'o')
    assert code == 0 and 'Traceback' not in txt, txt
    assert 'Skipped 2 unreadable' in txt and 'garbage.png' in txt and 'truncated.png' in txt, txt
    df = pd.read_csv(tmp_path/'o'/'top_losses.csv')
    assert len(df) == 3 and not df['item'].str.contains('garbage|truncated').any()

def test_report_uses_the_valid_split_and_says_so(demo_out, tmp_path):
    scenes_copy(demo_out[1], tmp_path/'data'/'train', n=4)
    scenes_copy(demo_out[1], tmp_path/'data'/'valid', n=2)
    code,txt = fastcam('report', demo_out[0]/'model.pkl', tmp_path/'data', '--k', 9, '--out', tmp_path/'o')
    assert code == 0, txt
    assert f"Using {tmp_path/'data'/'valid'}" in txt and 'train/ left out' in txt, txt
    df = pd.read_csv(tmp_path/'o'/'top_losses.csv')
    assert len(df) == 4 and df['item'].str.contains('/valid/').all()

def test_report_on_images_without_class_folders(demo_out, tmp_path):
    (tmp_path/'flat').mkdir()
    for i in range(2): Image.new('L', (64, 64), 40*i).save(tmp_path/'flat'/f'{i}.png')
    check_error(*fastcam('report', demo_out[0]/'model.pkl', tmp_path/'flat', '--out', tmp_path/'o'), 'not in class sub-folders')

def test_report_shows_progress_and_the_smallest_losses(demo_out, tmp_path):
    data = scenes_copy(demo_out[1], tmp_path/'data', n=6)
    code,txt = fastcam('report', demo_out[0]/'model.pkl', data, '--k', 3, '--out', tmp_path/'o', '--smallest')
    assert code == 0, txt
    assert 'Validating 9 images' in txt and '100.00%' not in txt   # piped: a plain line, no progress bar redraws
    top,low = pd.read_csv(tmp_path/'o'/'top_losses.csv'),pd.read_csv(tmp_path/'o'/'smallest_losses.csv')
    assert (tmp_path/'o'/'smallest_losses.png').exists() and len(low) == 3
    assert (low.loss.diff().dropna() >= 0).all() and low.loss.max() <= top.loss.min()

def test_report_never_overwrites_the_demo_results(demo_out, tmp_path):
    import shutil
    out = shutil.copytree(demo_out[0], tmp_path/'fastcam-out')          # the demo's folder, as `fastcam demo` left it
    before = (out/'top_losses.csv').read_text()
    valid = demo_folder(demo_out[1])
    check_error(*fastcam('report', out/'model.pkl', valid, '--k', 3, '--out', out), 'results of `fastcam demo`', '--out', '--force')
    assert (out/'top_losses.csv').read_text() == before
    code,txt = fastcam('report', out/'model.pkl', valid, '--k', 3, '--out', out, '--force')
    assert code == 0 and len(pd.read_csv(out/'top_losses.csv')) == 3, txt
    code,txt = fastcam('report', out/'model.pkl', valid, '--k', 2, '--out', out)   # its own results: replaced
    assert code == 0 and len(pd.read_csv(out/'top_losses.csv')) == 2, txt

def test_piped_demo_output_is_a_few_plain_lines_with_layer_method_and_versions(demo_out):
    import re
    txt = demo_out[1]
    assert '\r' not in txt and '█' not in txt and len(txt.splitlines()) < 90, txt
    assert 'epoch  train_loss  valid_loss  accuracy  time' in txt                # a header, then one line per epoch
    assert 'Maps of model[0] (8x8)' in txt and "method='auto' picked" in txt
    assert re.search(r'Made with fastcam \S+, fastai \S+, torch \S+, Python \S+', txt) and re.search(r'Took \d+ s', txt)

def test_explain_writes_a_png_and_a_csv_row_per_image_names_the_unreadable_and_exits_1(demo_out, tmp_path):
    "Issue 35: `fastcam explain MODEL.pkl FILE...`; a folder is read as its images; output to a file gives plain progress lines"
    out,_ = demo_out
    from fastcam.data import digit_scenes
    (tmp_path/'more').mkdir()
    for i,img in enumerate(digit_scenes(3, seed=8, held_out=True).image):
        Image.fromarray(img).save((tmp_path/'more' if i else tmp_path)/f'scene{i}.png')
    (tmp_path/'broken.png').write_text('not an image')
    code,txt = fastcam('explain', out/'model.pkl', tmp_path/'scene0.png', tmp_path/'broken.png', tmp_path/'more', '--out', tmp_path/'x')
    assert code == 1, txt
    assert 'Could not read' in txt and 'broken.png' in txt and 'Explained 3 of 4 image(s)' in txt and 'Explaining: 4/4' in txt
    df = pd.read_csv(tmp_path/'x'/'predictions.csv')
    assert len(df) == 3 and list(df.columns) == ['file', 'predicted', 'probability', 'top3', 'png']
    assert all(Image.open(tmp_path/'x'/p).size[0] > 200 for p in df.png) and df.top3.str.count(';').eq(2).all()
    code,txt = fastcam('explain', out/'model.pkl', tmp_path/'scene0.png', '--out', tmp_path/'y', '--target', 'eleven')
    assert code == 2 and "'eleven' is not one of this model's classes" in txt
    code,txt = fastcam('explain', out/'model.pkl', tmp_path/'nothing.png', '--out', tmp_path/'z')
    assert code == 2 and 'no file or folder at' in txt

def test_app_without_gradio_names_the_extra(demo_out):
    out,_ = demo_out
    code = ("import sys; sys.modules['gradio'] = None\nfrom fastcam.cli import main\n"
            f"try: main(['app', {str(out/'model.pkl')!r}])\nexcept ImportError as e: print(e); sys.exit(3)")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert r.returncode == 3 and 'fastcam app needs Gradio: pip install "fastcam[app]"' in r.stdout, r.stdout+r.stderr
