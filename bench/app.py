"""The page's answer time (issue 35), seen from the browser: from giving the page an image to its answer on screen, for the
digit CNN, on this machine's headless Chromium; the fastest and the median of `--reps` uploads.

    python bench/app.py
"""
import argparse, shutil, socket, statistics, tempfile, time, warnings
warnings.filterwarnings('ignore')
from pathlib import Path
from PIL import Image
from fastcam.all import *
from fastcam.webapp import app
from playwright.sync_api import sync_playwright
from table import print_table

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--reps', type=int, default=10)
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    files = []
    for i,img in enumerate(digit_scenes(a.reps, seed=5, held_out=True).image):
        files.append(tmp/f'{i}.png'); Image.fromarray(img).save(files[-1])
    s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()
    page_app,times = app(digit_learner(), port=port, prevent_thread_lock=True),[]
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=shutil.which('chromium'), args=['--no-sandbox', '--disable-gpu', '--disable-background-networking'])
        page = b.new_page(); page.goto(f'http://127.0.0.1:{port}/'); page.get_by_text('Where does the model look?').wait_for()
        for f in files:
            clear = page.locator('#upload button[aria-label="Clear"]')
            if clear.count(): clear.first.click(); page.locator('#message').get_by_text('Upload an image first').wait_for()
            t = time.perf_counter()
            page.set_input_files('#upload input[type=file]', str(f))
            page.locator('#message').get_by_text('Predicted').wait_for()
            page.locator('#map img').first.wait_for()
            times.append(time.perf_counter()-t)
        b.close()
    page_app.close()
    print_table(('model', 'uploads', 'upload to answer (fastest / median)'),
                [('digit CNN, 64 px', len(times), f"{min(times):.2f} s / {statistics.median(times):.2f} s")])

if __name__ == '__main__': main()
