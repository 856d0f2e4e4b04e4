"""Run by tests/test_distributed.py, under `torchrun --nproc_per_node 2` or alone: fit a tiny CNN (no BatchNorm,
so every rank holds the same weights) with GradCAMCallback inside `learn.distrib_ctx(cpu=True)` (gloo), validate,
and save what this rank captured.  Usage: python ddp_capture.py OUT_DIR DATA_DIR [texts|unlearn]
(`texts`: a small text classifier on texts of 20 to 400 words instead)."""
import os, sys, warnings
warnings.filterwarnings('ignore')
import torch, torch.nn as nn
from fastai.learner import Learner
from fastai.torch_core import set_seed
import fastai.distributed as fd
from fastcam.all import *

def _broadcast(self, t, rank):
    "fastai's `DistributedDL._broadcast` moves `t` to CUDA (NCCL only); the same on the CPU, for gloo"
    t = torch.LongTensor(t)
    torch.distributed.broadcast(t, rank)
    return t.tolist()
fd.DistributedDL._broadcast = _broadcast

def tiny_cnn(c:int)->nn.Sequential:
    body = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
    return nn.Sequential(body, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, c)))

def capture(cb)->dict:
    return {n: getattr(cb, n) for n in ('idxs', 'losses', 'targs', 'decoded', 'probs', 'maps', 'all_losses', 'tracked_idxs', 'history')}

def reviews(bs:int=8):
    """Texts of 20 to 400 words: each rank's shard holds texts of other lengths. 48 of them, so each rank's batches are one process's
    (in fastai's text models, a text's output depends on the padding its batch gives it)"""
    return text_dls(n_train=64, n_valid=48, seed=0, bs=bs, min_words=20, max_words=400)

def text_model(dls):
    "A small AWD_LSTM classifier (DDP averages the gradients: every rank holds the same weights)"
    from fastai.text.all import text_classifier_learner, AWD_LSTM, awd_lstm_clas_config
    config = dict(awd_lstm_clas_config, emb_sz=32, n_hid=64, n_layers=1)
    return text_classifier_learner(dls, AWD_LSTM, config=config, pretrained=False, drop_mult=0.3, cbs=GradCAMCallback(k=6, methods=['layercam']))

def unlearn(out, data, rank):
    "Fit with UnlearnShortcuts inside `distrib_ctx`: each rank revises its own batches; save the weights and what was revised"
    dls = digit_dls(data, n_train=64, n_valid=45, seed=0, bs=8)
    set_seed(0)
    cb = UnlearnShortcuts([('7', (0, 0, 16, 16))], share=1.0)
    learn = Learner(dls, tiny_cnn(dls.c), cbs=cb)
    with learn.no_bar(), learn.no_logging(), learn.distrib_ctx(cpu=True): learn.fit(1, 1e-2)
    torch.save(dict(state=learn.model.state_dict(), banked=sorted(cb._bank)), f"{out}/unlearn{rank}.pt")

if __name__=='__main__':
    out,data = sys.argv[1:3]
    texts = len(sys.argv)>3 and sys.argv[3]=='texts'
    rank = int(os.environ.get('RANK', 0))
    if len(sys.argv)>3 and sys.argv[3]=='unlearn': unlearn(out, data, rank); sys.exit()
    set_seed(0)
    dls = reviews() if texts else digit_dls(data, n_train=64, n_valid=45, seed=0, bs=8)     # 45 items: the second shard is padded
    set_seed(0)
    learn = text_model(dls) if texts else Learner(dls, tiny_cnn(dls.c), cbs=GradCAMCallback(k=6, methods=['layercam']))
    with learn.no_bar(), learn.no_logging(), learn.distrib_ctx(cpu=True, sync_bn=False):   # the text head's BatchNorm: no SyncBatchNorm on the CPU
        learn.fit(2, 1e-2)
        fitted = capture(learn.grad_cam)
        learn.validate()
        validated = capture(learn.grad_cam)
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    interp = learn.grad_cam.interpretation()     # after the context: the model and the data are whole again
    fig = interp.plot_top_losses_cam(k=6)
    if texts: fitted['inputs'],validated['inputs'] = learn.grad_cam.inputs,learn.grad_cam.inputs
    torch.save(dict(world=world, fitted=fitted, validated=validated, state=learn.model.state_dict(),
                    table=interp.top_losses_table(6).to_dict('list'), tiles=len(fig.axes)), f"{out}/rank{rank}.pt")
