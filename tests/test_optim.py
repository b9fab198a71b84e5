"""The batched L-BFGS: the same iterates as torch.optim.LBFGS, per image in a batch, at a cost that does not
grow with the history, and without reading anything back from the device."""

from __future__ import annotations

import pytest
import torch

from nst.bench.counts import count_ops_and_syncs
from nst.model.optim import BatchLBFGS

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
