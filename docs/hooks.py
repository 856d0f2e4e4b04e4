"mkdocs hook: the site is built from the notebooks, as nbdev would show them (Quarto, nbdev's own route, can't be installed here)."
import json, re, shutil
from pathlib import Path

ROOT = Path(__file__).parent.parent
DIRECTIVE = re.compile(r'^#\|\s*(\S+)')

def _show(cell)->bool:
    "Whether a cell belongs on the page: nbdev's `#| hide` cells (tests) and `#| default_exp` don't"
    flags = [m.group(1) for l in cell['source'] if (m := DIRECTIVE.match(l))]
    return not ({'hide', 'default_exp', 'eval:'} & set(flags))

def _clean(cell):
    "The cell without its nbdev directives (`#| export`, ...)"
    cell['source'] = [l for l in cell['source'] if not DIRECTIVE.match(l)]
    if cell['source']: cell['source'][-1] = cell['source'][-1].rstrip('\n')
    return cell

def process(nb:Path, dest:Path):
    "Write `nb` as the docs show it: directives stripped, hidden cells left out"
    d = json.loads(nb.read_text())
    d['cells'] = [_clean(c) for c in d['cells'] if _show(c)]
    dest.write_text(json.dumps(d, indent=1))

def _flat(nav):
    "The file names of a nav tree"
    for item in nav:
        if isinstance(item, dict):
            for v in item.values(): yield from (_flat(v) if isinstance(v, list) else [v])
        else: yield item

def on_pre_build(config, **kwargs):
    "Fill `docs_dir` with the processed notebooks, the hand-written pages and the figures"
    out = Path(config['docs_dir'])
    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    pages = {p for item in _flat(config['nav']) for p in [item] if str(p).endswith('.ipynb')}
    for nb in sorted((ROOT/'nbs').glob('*.ipynb')):
        if nb.name in pages: process(nb, out/nb.name)
    for f in (ROOT/'docs').iterdir():
        if f.suffix in ('.md', '.png', '.css'): shutil.copy(f, out/f.name)
