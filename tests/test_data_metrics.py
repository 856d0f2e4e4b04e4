import numpy as np, pytest, torch
import fastcore.test as fct
from fastcam.data import digit_scenes, digit_images, write_scenes, read_scenes, digit_dls, item_scenes
from fastcam.metrics import map_peaks, pointing_game, class_discrimination

def test_seeds_reproduce_and_differ():
    a,b,c = (digit_scenes(30, max_digits=2, seed=s) for s in (7, 7, 8))
    assert all((x == y).all() for x,y in zip(a.image, b.image)) and a.labels.equals(b.labels) and a.boxes.equals(b.boxes)
    assert not all((x == y).all() for x,y in zip(a.image, c.image))

def test_boxes_contain_the_digits():
    df = digit_scenes(40, max_digits=2, seed=1)
    for img,labels,boxes in df.itertuples(index=False):
        assert img.shape == (64, 64) and img.dtype == np.uint8 and len(labels) == len(boxes)
        outside = np.ones_like(img, dtype=bool)
        for x0,y0,x1,y1 in boxes:
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            assert img[y0:y1, x0:x1].max() > 150              # the digit's strokes are inside
            outside[max(y0-1,0):y1+1, max(x0-1,0):x1+1] = False
        assert np.median(img[outside]) < 80                   # the rest is background
        if len(labels) == 2: assert labels[0] != labels[1]

def test_validation_digits_are_never_training_digits():
    (tr,_),(va,_) = digit_images(False),digit_images(True)
    assert len(tr) + len(va) == 1797
    assert not (tr.reshape(len(tr), 1, -1) == va.reshape(1, len(va), -1)).all(-1).any()

def test_written_scenes_round_trip(tmp_path):
    df = write_scenes(tmp_path, n_train=12, n_valid=6, max_digits=1, seed=3)
    back = read_scenes(tmp_path)
    assert back.boxes.tolist() == df.boxes.tolist() and back.labels.tolist() == df.labels.tolist()
    assert all((tmp_path/f).exists() for f in df.fname) and back.is_valid.sum() == 6
    assert all(f.split('/')[1] == str(l[0]) for f,l in zip(df.fname, df.labels))    # class sub-folders

def test_dls_items_map_to_their_boxes():
    dls = digit_dls(n_train=40, n_valid=20, seed=5)
    sc = item_scenes(dls, dls.valid, range(20))
    fct.test_eq([str(l[0]) for l in sc.labels], [dls.vocab[int(y)] for _,y in dls.valid_ds])
    mdls = digit_dls(n_train=40, n_valid=20, max_digits=2, seed=5)
    msc = item_scenes(mdls, mdls.valid, range(20))
    for (_,y),labs in zip(mdls.valid_ds, msc.labels):
        assert sorted(mdls.vocab[int(i)] for i in y.nonzero()[:, 0]) == sorted(map(str, labs))

def test_pointing_game_on_hand_made_maps():
    maps = torch.zeros(3, 8, 8)
    maps[0, 1, 1] = 1; maps[1, 6, 6] = 1; maps[2, 0, 7] = 1   # peaks at (12,12), (52,52), (60,4) on 64x64
    fct.test_eq(map_peaks(maps, (64, 64)).tolist(), [[12., 12.], [52., 52.], [60., 4.]])
    box = (0, 0, 32, 32)
    assert pointing_game(maps, [box]*3, (64, 64)) == pytest.approx(1/3)
    assert pointing_game(maps, [box, (40, 40, 64, 64), (56, 0, 64, 8)], (64, 64)) == 1.0

def test_class_discrimination_on_hand_made_maps():
    a,b = torch.zeros(4, 8, 8),torch.zeros(4, 8, 8)
    a[:, 2, 1] = 1; b[:, 2, 6] = 1
    left,right = [(0, 0, 32, 64)]*4,[(32, 0, 64, 64)]*4
    assert class_discrimination(a, b, left, right, (64, 64)) == 1.0
    assert class_discrimination(b, a, left, right, (64, 64)) == 0.0
    assert class_discrimination(a, a, left, right, (64, 64)) == 0.5      # one map for both classes: at most half
