"""Benchmarks of the multi-source Swin crop mapper (agrinb.mapping); prints numbers, asserts nothing.

    python benchmarks/bench_swin_infer.py train     # tiny on the synthetic two-class task: curve, minutes to val mIoU >= 0.8
    python benchmarks/bench_swin_infer.py infer     # tiled inference on a 1024 x 1024 x 32-frame cube: pixels / s
    python benchmarks/bench_swin_infer.py fewshot   # 20 labelled pixels in a new region: fine-tune vs scratch (mIoU)
    python benchmarks/bench_swin_infer.py all

Options: --threads N (torch threads, default 2), --device, --work DIR (default /tmp/agrinb_bench_swin), --size, --frames.
Run on an otherwise idle machine: timings measured while other jobs share the cores are not comparable.
"""
import argparse, json, shutil, time
from pathlib import Path
import numpy as np
import torch

def bench_train(a):
    from agrinb.data.h5maps import demo_samples, default_cube
    from agrinb.mapping import train, evaluate_checkpoint
    w = Path(a.work); shutil.rmtree(w / 'samples', ignore_errors=True); shutil.rmtree(w / 'run', ignore_errors=True)
    t = time.time(); lists = demo_samples(w / 'samples', size=128, tile=32, stride=16, seed=0, region='Togo')
    cube = default_cube('Togo', (8, 8), 0)
    print(f"cube: {type(cube).__name__} from {'make_datacube' if cube.sizes['band'] == 18 and 'B2' in [str(b) for b in cube.band.values] else 'toy_cube'}")
    print(f"samples: {({k: len(v) for k, v in lists.items()})} written in {time.time() - t:.1f}s")
    ov = {'data.root': str(w / 'samples'), 'train.max_minutes': 10}
    t = time.time(); r = train('tiny', w / 'run', device=a.device, progress=False, overrides=ov); wall = time.time() - t
    print('epoch  time_s  loss    val_mIoU  val_mFscore')
    for h in r['history']: print(f"{h['epoch']:5d} {h['time_s']:7.1f} {h['loss']:.4f}  {h.get('val_mIoU', float('nan')):.4f}    {h.get('val_mFscore', float('nan')):.4f}")
    hit = [h for h in r['history'] if h.get('val_mIoU', 0) >= 0.8]
    print(f"first val mIoU >= 0.8: {'epoch %d after %.1f s' % (hit[0]['epoch'], hit[0]['time_s']) if hit else 'never'}; total {wall:.1f} s")
    m = evaluate_checkpoint('tiny', r['best_checkpoint'], w / 'test_metrics.json', device=a.device, progress=False, overrides=ov)
    print(f"test (best checkpoint): mIoU {m['mIoU']:.4f} mFscore {m['mFscore']:.4f} IoU {m['IoU']} aAcc {m['aAcc']:.4f}")
    return r

def bench_infer(a):
    from agrinb.mapping import load_config, build_model, predict_tiled
    from agrinb.core import get_device
    dev = get_device(a.device)
    cfg = load_config('tiny', {'data.sources': {'S2': {'bands': 10, 'frames': a.frames}}})
    model = build_model(cfg).to(dev).eval()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((a.frames, 10, a.size, a.size), dtype=np.float32)
    def predict(b): return torch.softmax(model({k: v.to(dev) for k, v in b.items()}), 1)
    for tile, overlap in [(64, 16), (128, 32)]:
        t = time.time(); p = predict_tiled(predict, {'S2': x}, tile, overlap, batch_size=8, progress=True); dt = time.time() - t
        print(f"infer {a.size}x{a.size}x{a.frames} frames x 10 bands, tile {tile} overlap {overlap}, device {dev}, "
              f"threads {torch.get_num_threads()}: {dt:.1f} s, {a.size * a.size / dt:,.0f} pixels/s; probs sum to 1: {np.allclose(p.sum(0), 1, atol=1e-4)}")

def bench_fewshot(a):
    from agrinb.data.h5maps import demo_samples, toy_cube, default_cube
    from agrinb.mapping import few_shot
    w = Path(a.work); ck = w / 'run' / 'MultiSourceMapper.pt'
    if not ck.exists(): bench_train(a)
    shutil.rmtree(w / 'new', ignore_errors=True)
    try:
        from agrinb.data.synthetic import make_datacube  # noqa: F401
        demo_samples(w / 'new', size=128, tile=32, stride=16, seed=1, region='Kenya'); region = 'Kenya (make_datacube)'
    except ImportError:
        demo_samples(w / 'new', size=128, tile=32, stride=16, seed=1, cube=toy_cube((128, 128), n_bands=18, seed=1, peak=3.5, gain=0.7))
        region = 'toy cube, green-up 2.5 months earlier, 30% weaker'
    ov = {'data.root': str(w / 'new')}
    print(f'new region: {region}; 20 labelled pixels (10 per class) in 4 train samples; test on the fully labelled test split')
    res = {'finetune': [], 'scratch': []}
    for seed in range(a.seeds):
        for mode, c in (('finetune', ck), ('scratch', None)):
            t = time.time()
            r = few_shot('tiny', c, n_pixels=20, n_tiles=4, steps=a.steps, seed=seed, device=a.device, progress=False, overrides=ov)
            res[mode].append(r['metrics']['mIoU'])
            print(f"seed {seed} {mode:8s}: test mIoU {r['metrics']['mIoU']:.4f} ({time.time() - t:.1f} s, {a.steps} steps)")
    for k, v in res.items(): print(f'{k:8s}: mIoU {np.mean(v):.4f} +- {np.std(v):.4f} over {len(v)} seeds')
    zero = few_shot('tiny', ck, n_pixels=20, n_tiles=4, steps=0, device=a.device, progress=False, overrides=ov)
    print(f"pretrained, not adapted: mIoU {zero['metrics']['mIoU']:.4f}")

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('what', choices=['train', 'infer', 'fewshot', 'all'])
    p.add_argument('--threads', type=int, default=2); p.add_argument('--device', default=None)
    p.add_argument('--work', default='/tmp/agrinb_bench_swin'); p.add_argument('--size', type=int, default=1024)
    p.add_argument('--frames', type=int, default=32); p.add_argument('--seeds', type=int, default=3); p.add_argument('--steps', type=int, default=100)
    a = p.parse_args(); torch.set_num_threads(a.threads); Path(a.work).mkdir(parents=True, exist_ok=True)
    for w in (['train', 'infer', 'fewshot'] if a.what == 'all' else [a.what]): globals()[f'bench_{w}'](a)
