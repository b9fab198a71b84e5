"""The batched L-BFGS: the same iterates as torch.optim.LBFGS, per image in a batch, at a cost that does not
grow with the history, and without reading anything back from the device."""

from __future__ import annotations

import pytest
import torch

from nst.bench.counting import count_ops_and_syncs
from nst.model.lbfgs import BatchLBFGS

N = 12  # unknowns per problem


def problems(batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per problem b: f_b(x) = 1/2 x'A_b x - c_b'x + k_b sum(x^4), convex but not quadratic, with the problems
    scaled differently (a shared step length or history would show)."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, N, N, generator=gen, dtype=torch.float64)
    a = q @ q.transpose(1, 2) / N + 0.1 * torch.eye(N, dtype=torch.float64)
    a = a * torch.logspace(0, 2, batch, dtype=torch.float64)[:, None, None]
    c = torch.randn(batch, N, generator=gen, dtype=torch.float64)
    k = torch.linspace(0.05, 0.5, batch, dtype=torch.float64)
    return a, c, k


def losses(x: torch.Tensor, a, c, k) -> torch.Tensor:
    return 0.5 * torch.einsum("bi,bij,bj->b", x, a, x) - (c * x).sum(1) + k * (x ** 4).sum(1)


def run_batch(a, c, k, steps: int, **kw) -> tuple[list[torch.Tensor], torch.Tensor]:
    x = torch.nn.Parameter(torch.zeros(a.shape[0], N, dtype=torch.float64))
    opt = BatchLBFGS([x], **kw)

    def closure():
        opt.zero_grad()
        f = losses(x, a, c, k)
        f.sum().backward()
        return f.detach()

    path, evaluations = [], torch.zeros(a.shape[0], dtype=torch.float64)
    for _ in range(steps):
        opt.step(closure)
        evaluations += opt.last_evaluations
        path.append(x.detach().clone())
    return path, evaluations


def run_torch(a, c, k, steps: int, history: int, first_evals: int) -> tuple[list[torch.Tensor], int]:
    """torch.optim.LBFGS, one problem, one iteration per step, a strong-Wolfe search on the first step only."""
    x = torch.nn.Parameter(torch.zeros(1, N, dtype=torch.float64))
    opt = torch.optim.LBFGS([x], lr=1, max_iter=1, max_eval=first_evals, history_size=history,
                            tolerance_grad=0, tolerance_change=0, line_search_fn="strong_wolfe")
    evaluations = 0

    def closure():
        nonlocal evaluations
        evaluations += 1
        opt.zero_grad()
        f = losses(x, a, c, k).sum()
        f.backward()
        return f

    path = []
    for step in range(steps):
        opt.step(closure)
        if step == 0:
            opt.param_groups[0]["line_search_fn"] = None
        path.append(x.detach().clone())
    return path, evaluations


@pytest.mark.parametrize("history, first_evals", [(3, 1), (5, 1), (5, 25), (50, 10)])
def test_same_iterates_as_torch_lbfgs(history, first_evals):
    a, c, k = problems(1)
    ours, our_evals = run_batch(a, c, k, 30, history_size=history, line_search_evals=first_evals)
    theirs, their_evals = run_torch(a, c, k, 30, history, first_evals)
    for step, (x, y) in enumerate(zip(ours, theirs)):
        assert torch.allclose(x, y, rtol=1e-9, atol=1e-10), (step, (x - y).abs().max())
    assert int(our_evals.item()) == their_evals
    # the problems are well posed: 30 steps get close to the minimum
    x = ours[-1].clone().requires_grad_(True)
    losses(x, a, c, k).sum().backward()
    assert x.grad.abs().max() < 1e-6


def test_the_first_step_line_search_really_searches():
    """With a budget, the search moves the tiny first step length torch starts from to a useful one."""
    a, c, k = problems(1)
    c = c * 1000  # the minimum is ~100x farther away than the first trial step reaches
    one, evals_one = run_batch(a, c, k, 1, line_search_evals=1)
    searched, evals_many = run_batch(a, c, k, 1, line_search_evals=25)
    assert evals_one.item() == 2 and 3 <= evals_many.item() <= 26  # the gradient, then the trial step(s)
    assert losses(searched[0], a, c, k) < losses(one[0], a, c, k)


@pytest.mark.parametrize("first_evals", [1, 25])
def test_a_batch_follows_the_paths_of_its_images_alone(first_evals):
    a, c, k = problems(5, seed=1)
    together, evals_together = run_batch(a, c, k, 40, history_size=7, line_search_evals=first_evals)
    for b in range(5):
        alone, evals_alone = run_batch(a[b:b + 1], c[b:b + 1], k[b:b + 1], 40, history_size=7,
                                       line_search_evals=first_evals)
        for step in range(40):
            assert torch.allclose(together[step][b], alone[step][0], rtol=1e-9, atol=1e-11), (b, step)
        assert evals_together[b] == evals_alone[0]  # an image that finished its search early is not charged


def test_a_non_finite_image_stays_put_and_leaves_the_others_alone():
    a, c, k = problems(3, seed=2)
    x = torch.nn.Parameter(torch.zeros(3, N, dtype=torch.float64))
    opt = BatchLBFGS([x], history_size=5, line_search_evals=10)

    def closure():
        opt.zero_grad()
        f = losses(x, a, c, k)
        f = f * torch.tensor([1.0, float("nan"), 1.0], dtype=f.dtype)  # image 1's loss and gradient are NaN
        f.sum().backward()
        return f.detach()

    for _ in range(10):
        opt.step(closure)
    clean, _ = run_batch(a[[0, 2]], c[[0, 2]], k[[0, 2]], 10, history_size=5, line_search_evals=10)
    assert torch.allclose(x.detach()[[0, 2]], clean[-1], rtol=1e-9, atol=1e-11)


def _step_counts(history: int, steps: int = 3) -> tuple[float, float]:
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(2, 3, 16, 16, generator=gen)
    x = torch.nn.Parameter(torch.zeros(2, 3, 16, 16))
    opt = BatchLBFGS([x], history_size=history)

    def closure():
        opt.zero_grad()
        f = ((x - target) ** 2 * (1 + x ** 2)).flatten(1).sum(1)
        f.sum().backward()
        return f.detach()

    for _ in range(history + 2):  # fill the history
        opt.step(closure)
    return count_ops_and_syncs(lambda: opt.step(closure), steps)


def test_step_cost_does_not_grow_with_the_history_and_nothing_is_read_back():
    ops_5, syncs_5 = _step_counts(5)
    ops_50, syncs_50 = _step_counts(50)
    assert ops_50 == ops_5, (ops_5, ops_50)  # the same kernels, whatever the history holds
    assert syncs_5 == syncs_50 == 0


def test_rejects_a_parameter_it_would_have_to_copy():
    x = torch.nn.Parameter(torch.zeros(2, 3, 4).transpose(1, 2))  # channels-last-like strides: not flat
    opt = BatchLBFGS([x])
    with pytest.raises(RuntimeError, match="view"):
        opt.step(lambda: x.sum((1, 2)))


# ---------------------------------------------------------------- resize: the history carried to a finer scale
def smooth_problem(size: int, batch: int = 1) -> tuple[torch.Tensor, callable]:
    """An ill-conditioned least-squares problem in a few smooth patterns, the same function of the picture at
    every resolution (each term a mean over pixels): what coarse to fine relies on."""
    gen = torch.Generator().manual_seed(3)
    freqs = torch.randint(0, 4, (6, 2), generator=gen).double()
    weights = torch.logspace(0, 3, 6, dtype=torch.float64)
    goals = torch.randn(4, 6, generator=gen, dtype=torch.float64)[:batch]  # row b the same for any batch
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size, dtype=torch.float64),
                            torch.linspace(0, 1, size, dtype=torch.float64), indexing="ij")
    patterns = torch.stack([torch.cos(torch.pi * (fy * ys + fx * xs)) for fy, fx in freqs])  # [6, H, W]

    def loss(x: torch.Tensor) -> torch.Tensor:  # x: [B, 1, H, W]
        proj = (x[:, 0, None] * patterns).mean((-2, -1))  # [B, 6]
        return (weights * (proj - goals) ** 2).sum(1) + 1e-3 * x.square().mean((1, 2, 3))

    return torch.zeros(batch, 1, size, size, dtype=torch.float64), loss


def fine_losses(resize: bool, batch: int = 1, coarse_steps: int = 12, fine_steps: int = 4) -> torch.Tensor:
    x, coarse = smooth_problem(8, batch)
    p = torch.nn.Parameter(x)
    opt = BatchLBFGS([p], history_size=10)

    def closure_for(loss_fn):
        def closure():
            opt.zero_grad()
            value = loss_fn(p)
            value.sum().backward()
            return value.detach()
        return closure

    for _ in range(coarse_steps):
        opt.step(closure_for(coarse))
    old_shape = p.shape
    with torch.no_grad():
        p.data = torch.nn.functional.interpolate(p.data, size=(16, 16), mode="bilinear", align_corners=False)
    opt.resize(old_shape) if resize else opt.reset()
    _, fine = smooth_problem(16, batch)
    trail = []
    for _ in range(fine_steps):
        trail.append(opt.step(closure_for(fine)))
    return torch.stack(trail + [fine(p).detach()])


def test_resize_carries_the_curvature_to_the_finer_scale():
    carried, restarted = fine_losses(resize=True), fine_losses(resize=False)
    assert torch.isfinite(carried).all()
    # the carried history knows the problem: its first fine step goes most of the way, a fresh start's creeps
    assert carried[1, 0] < 0.1 * restarted[1, 0], (carried[:, 0], restarted[:, 0])
    assert carried[-1, 0] < restarted[-1, 0]


def test_resize_keeps_each_image_its_own_problem():
    together = fine_losses(resize=True, batch=3)
    alone = fine_losses(resize=True, batch=1)
    torch.testing.assert_close(together[:, 0], alone[:, 0], rtol=1e-9, atol=1e-12)


def test_resize_without_a_history_is_a_fresh_start():
    p = torch.nn.Parameter(torch.zeros(1, 1, 4, 4))
    opt = BatchLBFGS([p])
    opt.resize((1, 1, 2, 2))  # before any step
    assert not opt.state
