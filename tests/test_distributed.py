"Issue 13: under DDP (2 CPU processes, gloo) the capture is the top-k of the whole validation set, as one process finds it"
import os, subprocess, sys
from pathlib import Path
import pytest, torch
import fastcore.test as fct
from fastai.learner import Learner
from fastcam.all import *
from conftest import hooks_on

SCRIPT = Path(__file__).parent/'ddp_capture.py'
sys.path.insert(0, str(SCRIPT.parent))
from ddp_capture import tiny_cnn, capture, reviews, text_model

def run_ranks(tmp_path_factory, *args):
    "What each of 2 ranks captured, fitting and validating inside `learn.distrib_ctx(cpu=True)` under torchrun"
    pytest.importorskip('accelerate', reason="fastai's distrib_ctx needs accelerate (in the dev extra)")
    out,data = tmp_path_factory.mktemp('ddp'),tmp_path_factory.mktemp('data')/'scenes'
    digit_dls(data, n_train=64, n_valid=45, seed=0, bs=8)          # the scenes, written once before the ranks start
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                        str(SCRIPT), str(out), str(data), *args], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode==0, r.stdout[-3000:]+r.stderr[-5000:]
    name = 'unlearn' if 'unlearn' in args else 'rank'
    return [torch.load(out/f'{name}{i}.pt', weights_only=False) for i in range(2)], data

@pytest.fixture(scope='module')
def ddp_run(tmp_path_factory): return run_ranks(tmp_path_factory)

@pytest.fixture(scope='module')
def ddp_texts(tmp_path_factory): return run_ranks(tmp_path_factory, 'texts')

def one_process(state, data):
    "The single-process capture of the same model and data"
    dls = digit_dls(data, n_train=64, n_valid=45, seed=0, bs=8)
    learn = Learner(dls, tiny_cnn(dls.c), cbs=GradCAMCallback(k=6, methods=['layercam']))
    learn.model.load_state_dict(state)
    with learn.no_bar(): learn.validate()
    return learn, capture(learn.grad_cam)

def check_same(got, want):
    fct.test_eq(got['idxs'].tolist(), want['idxs'].tolist())
    fct.test_close(got['losses'], want['losses'], eps=1e-5)
    fct.test_close(got['all_losses'], want['all_losses'], eps=1e-5)
    fct.test_eq(got['decoded'].tolist(), want['decoded'].tolist())
    for m in want['maps']:
        for f in want['maps'][m]: fct.test_close(got['maps'][m][f], want['maps'][m][f], eps=1e-4)

def test_ddp_capture_equals_one_process(ddp_run):
    (r0, r1), data = ddp_run
    fct.test_eq([r0['world'], r1['world']], [2, 2])
    learn, want = one_process(r0['state'], data)
    fct.test_eq(len(want['all_losses']), 45)
    check_same(r0['validated'], want)
    check_same(r1['validated'], want)                     # every rank holds the merged capture
    check_same(r0['fitted'], want)                        # the last fit pass: the same model, the same capture
    assert len(set(r0['validated']['idxs'].tolist()))==6  # padded duplicates never appear
    assert not hooks_on(learn.model)

def test_ddp_history_and_plots(ddp_run):
    (r0, r1), data = ddp_run
    h0,h1 = r0['fitted']['history'],r1['fitted']['history']
    fct.test_eq([h['epoch'] for h in h0], [0, 1])
    fct.test_eq(r0['fitted']['tracked_idxs'], r1['fitted']['tracked_idxs'])
    for a,b in zip(h0, h1):
        fct.test_eq(a['top']['idxs'].tolist(), b['top']['idxs'].tolist())
        fct.test_eq(a['tracked']['idxs'].tolist(), r0['fitted']['tracked_idxs'])    # tracked items from both shards
    # interpretation() and the plots work after the context, on rank 0 and the others
    fct.test_eq(r0['table']['index'], r0['validated']['idxs'].tolist())
    fct.test_eq(r0['tiles'], 6); fct.test_eq(r1['tiles'], 6)

def test_ddp_texts_of_different_lengths_on_each_rank_equal_one_process(ddp_texts):
    "Issue 32: texts of 20 to 400 words, sorted by length, then split between the ranks: each shard's rows are padded alike when merged"
    (r0, r1), _ = ddp_texts
    dls = reviews()
    lengths = torch.tensor([len(o[0]) for o in dls.valid_ds])
    order = torch.tensor(list(dls.valid.get_idxs()))
    assert lengths[order[:24]].min() > lengths[order[24:]].max()            # rank 0 reads the long texts, rank 1 the short ones
    learn = text_model(dls)
    learn.model.load_state_dict(r0['state'])
    with learn.no_bar(): learn.validate()
    want = capture(learn.grad_cam)
    for got in (r0['validated'], r1['validated'], r0['fitted']):
        check_same(got, want)
        fct.test_eq(got['maps']['gradcam']['actual'].shape, got['inputs'].shape)   # maps aligned with their tokens
    idxs = r0['validated']['idxs']
    assert lengths[idxs].max() - lengths[idxs].min() > 72                   # the top losses: texts of both ranks, several bptt chunks apart
    for x,m in zip(r0['validated']['inputs'], r0['validated']['maps']['gradcam']['actual']): assert (m[x==1] == 0).all()   # no weight on padding
    fct.test_eq(r0['tiles'], 6)

def test_ddp_unlearning_revises_each_ranks_batches_and_keeps_the_ranks_in_step(tmp_path_factory):
    "Issue 33: UnlearnShortcuts under `distrib_ctx`: each process revises its own batches (it met 7s), the weights stay the same on every rank"
    (r0, r1), _ = run_ranks(tmp_path_factory, 'unlearn')
    assert r0['banked'] == r1['banked'] == [7]
    for k in r0['state']: assert torch.allclose(r0['state'][k], r1['state'][k]) and torch.isfinite(r0['state'][k]).all(), k
