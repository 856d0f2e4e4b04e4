"mkdocs hook: the site is built from the notebooks, as nbdev would show them (Quarto, nbdev's own route, can't be installed here)."
import json, os, re
from pathlib import Path

ROOT = Path(__file__).parent.parent
DIRECTIVE = re.compile(r'^#\|\s*(\S+)')

def _flags(cell)->set: return {m.group(1) for l in cell['source'] if (m := DIRECTIVE.match(l))}

def _clean(cell):
    "The cell without its nbdev directives (`#| export`, ...); nbdev's `#| hide` cells (tests) run but are not shown"
    if {'hide', 'default_exp'} & _flags(cell): cell.setdefault('metadata', {})['tags'] = ['remove_cell']
    cell['source'] = [l for l in cell['source'] if not DIRECTIVE.match(l)]
    if cell['source']: cell['source'][-1] = cell['source'][-1].rstrip('\n')
    return cell

def process(nb:Path, dest:Path):
    "Write `nb` as the docs show it: directives stripped, hidden cells run but not shown, `#| eval: false` cells left out"
    d = json.loads(nb.read_text())
    d['cells'] = [_clean(c) for c in d['cells'] if 'eval:' not in _flags(c)]
    quiet = dict(cell_type='code', execution_count=None, outputs=[], metadata={'tags': ['remove_cell']},
                 source=["%matplotlib inline\n",      # figures drawn in the page even where MPLBACKEND=Agg (as in CI)
                         "import warnings; warnings.filterwarnings('ignore', category=FutureWarning); "
                         "warnings.filterwarnings('ignore', message='IProgress not found')"])
    d['cells'].insert(0, quiet)                 # library import noise (torch.jit, tqdm) is not part of the page
    dest.write_text(json.dumps(d, indent=1))

def _flat(nav):
    "The file names of a nav tree"
    for item in nav:
        if isinstance(item, dict):
            for v in item.values(): yield from (_flat(v) if isinstance(v, list) else [v])
        else: yield item

def on_config(config, **kwargs):
    "The notebooks' kernels start with docs/jupyter's settings: their own log (a warning about TCP at every start) is kept for errors"
    paths = os.environ.get('JUPYTER_CONFIG_PATH', '')
    os.environ['JUPYTER_CONFIG_PATH'] = os.pathsep.join(p for p in (str(ROOT/'docs'/'jupyter'), paths) if p)
    return config

def on_pre_build(config, **kwargs):
    "Write the processed notebooks of the nav into `docs_dir`, next to the hand-written pages (they are git-ignored there)"
    out = Path(config['docs_dir'])
    for old in out.glob('*.ipynb'): old.unlink()
    pages = {p for p in _flat(config['nav']) if str(p).endswith('.ipynb')}
    for nb in sorted((ROOT/'nbs').glob('*.ipynb')):
        if nb.name in pages: process(nb, out/nb.name)
