"A house one can live in (issue 22): layers that import only what is below them, small pieces, a top-k without a Learner."
import ast, re, random
from pathlib import Path
import torch
import fastcore.test as fct
import fastcam
from fastcam.capture import TopK, merge_top_k

PKG = Path(fastcam.__file__).parent

def layer_order()->dict:
    "Each generated module's place in the house: the number of its notebook (`nbs/07_callback.ipynb` -> (7, ''); fastai's `08b_...` -> (8, 'b'), after 08)"
    order = {}
    for f in PKG.glob('*.py'):
        m = re.search(r'File to edit: \.\./nbs/(\d+)([a-z]?)_\w+\.ipynb', f.read_text())
        if m: order[f.stem] = (int(m.group(1)), m.group(2))
    return order

def imports_of(path:Path)->set:
    "Every fastcam module `path` imports, at the top or inside a function"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level==1: found |= {node.module} if node.module else {a.name for a in node.names}
            elif (node.module or '').startswith('fastcam'):
                mod = node.module.split('.')
                found |= {mod[1]} if len(mod)>1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split('.')[1] for a in node.names if a.name.startswith('fastcam.')}
    return found - {path.stem}

def test_every_module_imports_only_the_layers_below_it():
    order = layer_order()
    assert {'cam', 'tasks', 'capture', 'interpret', 'plots', 'history', 'callback', 'metrics', 'classes', 'report', 'demo', 'cli', 'attributions'} <= set(order)
    assert order['metrics'] < order['classes'] < order['data']
    for mod,pos in order.items():
        for dep in imports_of(PKG/f'{mod}.py') & set(order):
            assert order[dep] < pos, f"fastcam.{mod} (notebook {pos}) imports fastcam.{dep} (notebook {order[dep]}), which is above it"

def test_the_import_graph_has_no_cycle():
    graph = {f.stem: imports_of(f) for f in PKG.glob('*.py')}
    def visit(m, path):
        assert m not in path, f"import cycle: {' -> '.join([*path, m])}"
        for d in graph.get(m, ()): visit(d, [*path, m])
    for m in graph: visit(m, [])

def test_a_cycle_would_be_found(tmp_path):
    "The checks above can fail: a module importing one above it, even inside a function, is caught"
    f = tmp_path/'cam.py'
    f.write_text("def late():\n    from .callback import GradCAMCallback\n    from fastcam import history\n")
    assert imports_of(f) == {'callback', 'history'}

def test_pieces_are_small():
    "No class over ~150 lines, no function over ~60"
    for f in PKG.glob('*.py'):
        if f.stem=='_modidx': continue
        for node in ast.walk(ast.parse(f.read_text())):
            size = node.end_lineno - node.lineno + 1 if hasattr(node, 'end_lineno') else 0
            if isinstance(node, ast.ClassDef): assert size <= 150, f"class {f.stem}.{node.name}: {size} lines"
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)): assert size <= 60, f"{f.stem}.{node.name}: {size} lines"

def test_the_cli_only_parses_and_calls():
    defs = {n.name for n in ast.parse((PKG/'cli.py').read_text()).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    assert defs <= {'_positive_int', 'parser', 'main'}, defs

def test_topk_without_a_learner_is_the_top_k_of_everything():
    "The streaming top-k of random batches equals the top-k of all the losses; tracked and probe rows are the asked ones"
    g = torch.Generator().manual_seed(0)
    losses = torch.rand(203, generator=g)
    tk = TopK(k=7, n=203, track=[5, 80, 202], probe=[0, 100, 150], probe_keep=lambda b: b['losses'] < 0.5)
    made = 0
    start = 0
    for bs in [32]*6 + [11]:
        l = losses[start:start+bs]
        def rows_of(rows, l=l):
            nonlocal made; made += len(rows)
            return dict(losses=l[rows], x=l[rows]*2)
        tk.add(l, start, rows_of)
        start += bs
    top = losses.topk(7)
    fct.test_eq(tk.rows('top')['losses'], top.values); fct.test_eq(tk.rows('top')['idxs'], top.indices)
    fct.test_eq(tk.rows('top')['x'], top.values*2)
    fct.test_eq(tk.rows('tracked')['idxs'].tolist(), [5, 80, 202])
    fct.test_eq(tk.rows('probed')['idxs'].tolist(), [i for i in (0, 100, 150) if losses[i] < 0.5])
    fct.test_eq(tk.all_losses, losses)
    assert made < 7*7 + 6                        # rows were made only for the few that could enter
