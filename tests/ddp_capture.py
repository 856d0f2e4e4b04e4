"""Run by tests/test_distributed.py, under `torchrun --nproc_per_node 2` or alone: fit a tiny CNN (no BatchNorm,
so every rank holds the same weights) with GradCAMCallback inside `learn.distrib_ctx(cpu=True)` (gloo), validate,
and save what this rank captured.  Usage: python ddp_capture.py OUT_DIR DATA_DIR"""
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

if __name__=='__main__':
    out,data = sys.argv[1:3]
    rank = int(os.environ.get('RANK', 0))
    dls = digit_dls(data, n_train=64, n_valid=45, seed=0, bs=8)     # 45 items: the second shard is padded
    set_seed(0)
    learn = Learner(dls, tiny_cnn(dls.c), cbs=GradCAMCallback(k=6, methods=['layercam']))
    with learn.no_bar(), learn.no_logging(), learn.distrib_ctx(cpu=True):
        learn.fit(2, 1e-2)
        fitted = capture(learn.grad_cam)
        learn.validate()
        validated = capture(learn.grad_cam)
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    interp = learn.grad_cam.interpretation()     # after the context: the model and the data are whole again
    fig = interp.plot_top_losses_cam(k=6)
    torch.save(dict(world=world, fitted=fitted, validated=validated, state=learn.model.state_dict(),
                    table=interp.top_losses_table(6).to_dict('list'), tiles=len(fig.axes)), f"{out}/rank{rank}.pt")
