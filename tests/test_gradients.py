"""Meta-gradients of agrinb's task-batched MAML / TIML equal a plain per-task loop (float64), and bad inputs fail clearly.

The reference is the pattern libraries such as learn2learn use: one task at a time, `torch.func.functional_call`
and `torch.autograd.grad(create_graph=True)` for the inner steps, then the outer gradient of the mean query loss.
"""
import types
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from agrinb.core import AgrinbError, save_checkpoint
from agrinb.models.lstm import LSTMClassifier
from agrinb.meta.maml import MAML, MODEL_VERSION
from agrinb.meta.core import meta_backward, query_losses
from agrinb.tasks.pixels import toy_tasks, prepare_task, draw_episodes
from agrinb.meta.timl import TIML, MAMLInfo

torch.set_num_threads(1)


def _loss(z, y): return F.binary_cross_entropy_with_logits(z[:, 0], y.to(z.dtype))


def loop_meta_grads(model, params, sx, sy, qx, qy, lr, steps, films=None, wrt=None, first_order=False):
    "Reference outer gradient: a Python loop over tasks, functional_call + autograd.grad."
    K, total = sx.shape[0], 0
    for k in range(K):
        extra = () if films is None else ({n: v[k] for n, v in films.items()},)
        p = dict(params)
        for _ in range(steps):
            g = torch.autograd.grad(_loss(functional_call(model, p, (sx[k], *extra)), sy[k]), list(p.values()),
                                    create_graph=not first_order)
            lrs = lr if isinstance(lr, (list, tuple)) else [lr] * len(g)   # one step size per tensor, or one for all
            p = {n: v - a * gi for (n, v), gi, a in zip(p.items(), g, lrs)}
        total = total + _loss(functional_call(model, p, (qx[k], *extra)), qy[k]) / K
    return torch.autograd.grad(total, wrt if wrt is not None else list(params.values()))


def rel_err(a, b): return float((a - b).norm() / b.norm().clamp_min(1e-300))


def batch(K=6, k=10, q=4, seed=0):
    tasks = toy_tasks(K, n=2 * (k + q) + 4, seed=seed)
    td = [prepare_task(t, 'cpu', 18, 13, k + q) for t in tasks]
    sx, sy, qx, qy = draw_episodes(td, k, q, np.random.default_rng(seed))
    info = torch.stack([t.info for t in td])
    return sx.double(), sy, qx.double(), qy, info.double()


@pytest.mark.parametrize('route', ['lstm', 'vmap'])
def test_learned_step_sizes_second_order_match_loop(route):
    "Per-tensor step sizes (tensors the outer loop learns): gradients to θ and to each step size equal the loop's."
    torch.manual_seed(0)
    model = (LSTMClassifier(18, 32, dropout=0.0) if route == 'lstm' else
             torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12 * 18, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)))
    model = model.double().eval(); params = dict(model.named_parameters())
    sx, sy, qx, qy, _ = batch()
    lrs = [torch.tensor(0.02 * (i + 1), dtype=torch.float64, requires_grad=True) for i in range(len(params))]
    wrt = list(params.values()) + lrs
    ref = loop_meta_grads(model, params, sx, sy, qx, qy, lrs, 2, wrt=wrt)
    model.zero_grad()
    meta_backward(model, params, sx, sy, qx, qy, inner_lr=lrs, inner_steps=2)
    for i, (t, r) in enumerate(zip(wrt, ref)):
        assert rel_err(t.grad, r) < 1e-6, (i, rel_err(t.grad, r))
    assert all(float(a.grad.abs()) > 0 for a in lrs)


def test_meta_fit_learns_step_sizes():
    "The outer step moves the learned log step sizes; learn_lr=False leaves the fixed inner_lr."
    tasks = toy_tasks(6)
    lrn = MAML(hidden=8, dropout=0.0).meta_fit(tasks, steps=3, meta_batch=3, inner_lr=0.05, progress=False)
    got = np.array(lrn.step_sizes())
    assert got.shape == (len(list(lrn.model.parameters())),) and np.abs(got - 0.05).max() > 1e-4
    fixed = MAML(hidden=8).meta_fit(tasks, steps=2, meta_batch=3, inner_lr=0.05, learn_lr=False, progress=False)
    assert fixed.step_sizes() == 0.05
    assert torch.allclose(fixed.step_size.log_lr.exp(), torch.tensor(0.05))   # not trained


@pytest.mark.parametrize('inner_steps', [1, 2])
def test_maml_second_order_matches_loop(inner_steps):
    torch.manual_seed(0)
    model = LSTMClassifier(18, 128, dropout=0.0).double().eval()
    params = dict(model.named_parameters())
    sx, sy, qx, qy, _ = batch()
    lr = 0.05
    ref = loop_meta_grads(model, params, sx, sy, qx, qy, lr, inner_steps)
    for chunk in (None, 4):
        model.zero_grad()
        meta_backward(model, params, sx, sy, qx, qy, chunk_size=chunk, inner_lr=lr, inner_steps=inner_steps)
        for (n, p), r in zip(params.items(), ref):
            assert rel_err(p.grad, r) < 1e-6, (n, rel_err(p.grad, r))
    # first order differs measurably at this inner learning rate ...
    model.zero_grad()
    meta_backward(model, params, sx, sy, qx, qy, inner_lr=lr, inner_steps=inner_steps, first_order=True)
    fo = torch.cat([p.grad.flatten() for p in params.values()])
    so = torch.cat([r.flatten() for r in ref])
    assert rel_err(fo, so) > 1e-3
    # ... and itself matches the first-order loop
    ref_fo = loop_meta_grads(model, params, sx, sy, qx, qy, lr, inner_steps, first_order=True)
    for p, r in zip(params.values(), ref_fo): assert rel_err(p.grad, r) < 1e-6


def test_generic_vmap_path_matches_loop():
    "A module without the LSTM's fast routes goes through vmap + autograd and gives the same gradients."
    torch.manual_seed(0)
    model = LSTMClassifier(18, 32, dropout=0.0).double().eval()
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12 * 18, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()
    params = dict(plain.named_parameters())
    sx, sy, qx, qy, _ = batch(K=4)
    ref = loop_meta_grads(plain, params, sx, sy, qx, qy, 0.1, 2)
    plain.zero_grad(); meta_backward(plain, params, sx, sy, qx, qy, inner_lr=0.1, inner_steps=2)
    for p, r in zip(params.values(), ref): assert rel_err(p.grad, r) < 1e-6


@pytest.mark.parametrize('inner_steps', [1, 2])
def test_timl_encoder_gradients_match_loop(inner_steps):
    t = TIML(hidden=64, dropout=0.0, encoder_dropout=0.0, device='cpu')
    t.model.double().eval(); t.encoder.double().eval()
    sx, sy, qx, qy, info = batch(K=5)
    params = dict(t.model.named_parameters())
    enc = list(t.encoder.parameters())
    lr = 0.05
    ref = loop_meta_grads(t.model, params, sx, sy, qx, qy, lr, inner_steps, films=t.encoder(info), wrt=list(params.values()) + enc)
    for m in (t.model, t.encoder): m.zero_grad()
    meta_backward(t.model, params, sx, sy, qx, qy, extra_fn=lambda i: (t.encoder(info[i]),), chunk_size=3,
                  inner_lr=lr, inner_steps=inner_steps)
    got = [p.grad for p in params.values()] + [p.grad for p in enc]
    for g, r in zip(got, ref): assert rel_err(g, r) < 1e-6
    assert all(float(g.abs().sum()) > 0 for g in got[len(params):])   # the encoder does learn


# ---- bad inputs -------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def tasks(): return toy_tasks(6, n=40)


def test_one_class_support(tasks):
    t = tasks[0]
    with pytest.raises(AgrinbError, match='both classes'): MAML(hidden=8).adapt((t.support_x, np.zeros(len(t.support_x))))
    stub = types.SimpleNamespace(name='stub', support_x=t.support_x, support_y=np.ones(len(t.support_y)),
                                 query_x=t.query_x[:0], query_y=t.query_y[:0], info=t.info)
    with pytest.raises(AgrinbError, match="stub.*0 negative"): MAML(hidden=8).meta_fit([stub], steps=1, progress=False)


def test_task_info_size(tasks):
    t = tasks[0]
    with pytest.raises(AgrinbError, match='size 13'): TIML(hidden=8).adapt(t.support_x, t.support_y, info=np.zeros(12))
    with pytest.raises(AgrinbError, match='size 13'): MAMLInfo(hidden=8).adapt(t, info=np.zeros(14))
    stub = types.SimpleNamespace(**{**vars(t), 'name': 'odd', 'info': np.zeros(5)})
    with pytest.raises(AgrinbError, match="odd.*size 13"): TIML(hidden=8).meta_fit([stub], steps=1, progress=False)


def test_nan_inputs(tasks):
    t = tasks[0]
    x = t.support_x.copy(); x[0, 3, 2] = np.nan
    with pytest.raises(AgrinbError, match='gap-fill'): MAML(hidden=8).adapt((x, t.support_y))
    stub = types.SimpleNamespace(**{**vars(t), 'name': 'cloudy', 'support_x': x})
    with pytest.raises(AgrinbError, match="cloudy.*support_x.*NaN"): MAML(hidden=8).meta_fit([stub], steps=1, progress=False)
    pred = MAML(hidden=8).adapt(t, steps=1)
    with pytest.raises(AgrinbError, match='gap-fill'): pred.predict_proba(x)


def test_checkpoint_of_another_model_or_version(tmp_path, tasks):
    TIML(hidden=8).save(tmp_path / 'timl.pt')
    with pytest.raises(AgrinbError, match="'MAML'.*'TIML'"): MAML.load(tmp_path / 'timl.pt')
    m = MAML(hidden=8)
    save_checkpoint(tmp_path / 'v0.pt', 'MAML', m.state(), model_version=MODEL_VERSION + 1, hparams=m.hparams)
    with pytest.raises(AgrinbError, match='model_version'): MAML.load(tmp_path / 'v0.pt')
    save_checkpoint(tmp_path / 'shape.pt', 'MAML', MAML(hidden=16).state(), model_version=MODEL_VERSION, hparams=m.hparams)
    with pytest.raises(AgrinbError, match=r'weight_hh_l0: \(64, 16\) vs \(32, 8\)'): MAML.load(tmp_path / 'shape.pt')
    (tmp_path / 'junk.pt').write_bytes(b'not a checkpoint')
    with pytest.raises(AgrinbError, match='junk.pt'): MAML.load(tmp_path / 'junk.pt')


def test_steps_zero(tasks):
    with pytest.raises(AgrinbError, match='steps'): MAML(hidden=8).meta_fit(tasks, steps=0, progress=False)
    with pytest.raises(AgrinbError, match='steps'): MAML(hidden=8).adapt(tasks[0], steps=0)


def test_empty_query(tasks):
    with pytest.raises(AgrinbError, match='empty query'): MAML(hidden=8).meta_fit(tasks, steps=1, k_query=0, progress=False)
    m = LSTMClassifier(18, 8)
    sx, sy = torch.randn(2, 4, 12, 18), torch.randint(0, 2, (2, 4))
    with pytest.raises(AgrinbError, match='empty query'):
        query_losses(m, dict(m.named_parameters()), sx, sy, sx[:, :0], sy[:, :0])


def test_adapt_many_equals_adapt_per_task():
    "adapt_many (tasks batched, support sets of different sizes padded) gives each task what adapt gives it, same seed."
    torch.manual_seed(0)
    lr = MAML(hidden=32, dropout=0.0)          # dropout off: with it a batch draws other masks than one task does
    news = toy_tasks(2, n=40, seed=7) + toy_tasks(2, n=24, seed=8)             # 20 and 12 support series
    assert len({len(t.support_y) for t in news}) == 2
    many, one = lr.adapt_many(news, steps=30, seed=4), [lr.adapt(t, steps=30, seed=4) for t in news]
    assert [m.steps for m in many] == [o.steps for o in one] == [30] * 4
    for m, o, t in zip(many, one, news):
        a, b, zero = m.predict_proba(t.query_x), o.predict_proba(t.query_x), lr.predictor().predict_proba(t.query_x)
        assert np.abs(a - b).max() < 1e-5 and np.abs(a - zero).max() > 1e-3   # equal, and adapted (it can fail)
