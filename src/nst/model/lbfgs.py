"""L-BFGS for a batch of independent images: each image its own problem, the history in fixed-size tensors,
and no host syncs.

torch.optim.LBFGS treats all parameters as one vector, so B images in one [B, 3, H, W] parameter would share
one step length and curvature pairs summed over the batch. It also runs its two-loop recursion as 4 x history
small kernels with Python between them, and reads numbers back from the device (`float(loss)`, `if ys > ...`)
several times per step: on a GPU each of those waits for all queued work.

Here every image has its own curvature pairs, step length and first-step line search, so B images in a batch
follow the trajectories they would follow alone. The history is a ring of `history_size` (s, y) pairs per
image in one tensor, and the inverse-Hessian product is the compact form of Byrd, Nocedal and Schnabel (1994):
two batched products with the stacked history and two triangular solves of history_size, however full the
history is. Every decision (keep a curvature pair, bracket or zoom in the line search) is a `torch.where` on
per-image flags. The only reads from the device are in a line search with a budget above one evaluation:
one per extra evaluation, to stop when no image is still searching.

It follows torch.optim.LBFGS with max_iter=1 (one iteration per step) and tolerance_grad=tolerance_change=0:
- a first step (after construction or `reset`): d = -g and t = min(1, 1/|g|_1) * lr, then a strong-Wolfe line
  search with a budget of `line_search_evals` evaluations. torch's default budget for max_iter=1 is one
  evaluation: try t and keep it if the loss fell, else stay;
- a later step: (s, y) = (t d, g - g_prev) joins the history if s.y > 1e-10, d = -H g, t = lr, and no further
  evaluation;
- an image whose direction is not a descent direction (g.d > 0) does not move in that step.
`resize(old_shape)` after the parameter was upsampled (the next scale of a coarse-to-fine run) keeps the history
instead of starting over: each pair is upsampled with the image, and its y divided by the area ratio (a loss that
is about the same for an image and its upsampled copy has a gradient that much smaller per pixel). The first step
at the new size is then a quasi-Newton step in the directions the coarse scale learnt (`make bench-schedule`).
`step(closure)` needs a closure that returns the per-image losses [B] and leaves their gradient in `.grad`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .precision import current_autocast, exact_float32, no_autocast

C1, C2 = 1e-4, 0.9  # strong-Wolfe constants (torch's)
CURVATURE_EPS = 1e-10  # a pair with s.y at or below this is not kept (torch's)
BRACKET_EPS = 1e-9  # a bracket narrower than this (times max |d|) ends the line search (torch's tolerance_change)
BRACKET, ZOOM, DONE = 0, 1, 2


class BatchLBFGS(torch.optim.Optimizer):
    """L-BFGS over the first dimension of one parameter: row b is image b's own problem."""

    def __init__(self, params, lr: float = 1.0, history_size: int = 50, line_search_evals: int = 1):
        if history_size < 1 or line_search_evals < 1:
            raise ValueError("history_size and line_search_evals must be at least 1")
        super().__init__(params, dict(lr=lr, history_size=history_size, line_search_evals=line_search_evals))
        if len(self.param_groups) != 1 or len(self.param_groups[0]["params"]) != 1:
            raise ValueError("BatchLBFGS optimizes exactly one tensor, shaped [batch, ...]")
        self.last_evaluations: torch.Tensor | None = None  # per image, in the last step

    def reset(self) -> None:
        """Forget the history: the next step is a first step again."""
        self.state.clear()

    @torch.no_grad()
    def resize(self, old_shape: torch.Size | tuple[int, ...]) -> None:
        """The [B, C, h, w] parameter is now [B, C, H, W], upsampled: carry each image's curvature pairs over.

        s is upsampled bilinearly and y too, divided by the area ratio r; h_diag (s.y / y.y) grows by r. A pair
        whose s.y is no longer above CURVATURE_EPS is dropped. The next step adds no pair (its previous
        gradient was of the old size) and takes a unit quasi-Newton step.
        """
        p = self.param_groups[0]["params"][0]
        state = self.state.get(p)
        if not state or "hist" not in state or state["n_iter"] < 2 or len(old_shape) != 4 or p.dim() != 4:
            self.reset()
            return
        hist = state["hist"]
        b, _, m, _ = hist.shape
        c, h, w = old_shape[1:]
        big_h, big_w = p.shape[-2:]
        ratio = (big_h * big_w) / (h * w)
        pairs = F.interpolate(hist.view(b * 2 * m, c, h, w), size=(big_h, big_w), mode="bilinear",
                              align_corners=False).view(b, 2, m, -1)
        del hist, state["hist"]  # the old ring goes before the new products need memory
        pairs[:, 1] /= ratio
        sy = torch.bmm(pairs[:, 0], pairs[:, 1].transpose(1, 2))
        keep = state["valid"] & (torch.diagonal(sy, dim1=1, dim2=2) > CURVATURE_EPS)
        pairs.mul_(keep[:, None, :, None])
        both = keep[:, :, None] & keep[:, None, :]
        state["hist"] = pairs
        state["sy"] = sy * both
        state["yy"] = torch.bmm(pairs[:, 1], pairs[:, 1].transpose(1, 2))
        state["valid"] = keep
        state["h_diag"] = state["h_diag"] * ratio
        state["prev_g"] = pairs.new_zeros(b, pairs.shape[-1])
        state["resized"] = True

    @torch.no_grad()
    def step(self, closure):
        group = self.param_groups[0]
        p = group["params"][0]
        device = p.device.type
        # The step may run inside the training precision's autocast (Lightning's bf16-mixed wraps the whole
        # training step). Only the closure belongs there: the optimizer's own products are float32.
        # Likewise TF32: the closure runs with the run's setting, the optimizer's products in exact float32.
        precision = current_autocast(device)
        with no_autocast(device), exact_float32() as exact:
            def in_run_settings():
                with precision, exact.outer(), torch.enable_grad():
                    return closure()
            return self._step(group, p, in_run_settings)

    def _step(self, group: dict, p: torch.Tensor, closure):
        flat = p.view(p.shape[0], -1)  # fails loudly for a non-contiguous parameter instead of copying
        state = self.state[p]
        if "hist" not in state or state["hist"].shape[-1] != flat.shape[1]:
            self._init_state(state, flat, group["history_size"])
        loss = closure()
        g = p.grad.reshape(flat.shape).clone()
        state["n_iter"] += 1
        first = state["n_iter"] == 1
        if first:
            d = g.neg()
            t = g.abs().sum(1).reciprocal().clamp(max=1.0) * group["lr"]
        else:
            if not state.pop("resized", False):  # no (s, y) across a resize: the last g was of another size
                self._remember(state, g)
            d = self._inverse_hessian_times(state, g).neg_()
            t = torch.full_like(state["t"], group["lr"])
        state["prev_g"].copy_(g)
        gtd = (g * d).sum(1)
        evaluations = torch.ones_like(t)
        if first:
            x0 = flat.clone()
            t, searched = self._line_search(closure, p, x0, t, d, loss.detach(), gtd, group["line_search_evals"])
            evaluations = evaluations + searched
            flat.copy_(x0)
        flat.addcmul_(torch.where(gtd <= 0, t, 0.0)[:, None], d)  # no move where d is not a descent direction
        state["d"], state["t"] = d, t
        self.last_evaluations = evaluations
        return loss

    # ------------------------------------------------------------------ history
    @staticmethod
    def _init_state(state: dict, flat: torch.Tensor, m: int) -> None:
        b, n = flat.shape
        state.clear()
        state["n_iter"] = 0
        state["hist"] = flat.new_zeros(b, 2, m, n)  # ring slots of s ([:, 0]) and y ([:, 1])
        state["sy"] = flat.new_zeros(b, m, m)  # s_i . y_j by slot
        state["yy"] = flat.new_zeros(b, m, m)  # y_i . y_j by slot
        state["valid"] = torch.zeros(b, m, dtype=torch.bool, device=flat.device)
        state["ptr"] = torch.zeros(b, dtype=torch.long, device=flat.device)  # the next slot to write
        state["h_diag"] = flat.new_ones(b)  # the initial inverse Hessian's scale, s.y / y.y of the newest pair
        state["prev_g"] = flat.new_zeros(b, n)
        state["t"] = flat.new_zeros(b)

    @staticmethod
    def _slots(state: dict) -> int:
        """Slots that may hold a pair, known on the host: one pair at most per step since the first, so before
        the ring wraps only the first n_iter - 1 are used (the products skip the empty ones)."""
        return min(state["hist"].shape[2], state["n_iter"] - 1)

    def _remember(self, state: dict, g: torch.Tensor) -> None:
        """Add (s, y) of the last step to each image's ring where s.y > CURVATURE_EPS, with its dot products."""
        hist, ptr = state["hist"], state["ptr"]
        b, m, k = hist.shape[0], hist.shape[2], self._slots(state)
        y = g - state["prev_g"]
        s = state["d"] * state["t"][:, None]
        ys = (y * s).sum(1)
        keep = ys > CURVATURE_EPS
        rows = torch.arange(b, device=hist.device)
        new = torch.stack([s, y], 1)  # [B, 2, n]
        hist[rows, :, ptr] = torch.where(keep[:, None, None], new, hist[rows, :, ptr])
        with_s = torch.bmm(hist[:, 0, :k], new.transpose(1, 2))  # [B, k, 2]: every s_i against the new s and y
        with_y = torch.bmm(hist[:, 1, :k], new.transpose(1, 2))  # every y_j against them
        slot = (torch.arange(k, device=hist.device) == ptr[:, None]) & keep[:, None]  # [B, k]: where it went
        row, col = slot[:, :, None], slot[:, None, :]
        sy, yy = state["sy"][:, :k, :k], state["yy"][:, :k, :k]
        sy.copy_(torch.where(col, with_s[:, :, 1:], torch.where(row, with_y[:, None, :, 0], sy)))
        yy.copy_(torch.where(col, with_y[:, :, 1:], torch.where(row, with_y[:, None, :, 1], yy)))
        state["valid"][:, :k] |= slot
        state["ptr"] = torch.where(keep, (ptr + 1) % m, ptr)
        state["h_diag"] = torch.where(keep, ys / (y * y).sum(1), state["h_diag"])

    def _inverse_hessian_times(self, state: dict, g: torch.Tensor) -> torch.Tensor:
        """H g in the compact form: H = gI + [S gY] [[R^-T (D + g Y'Y) R^-1, -R^-T], [-R^-1, 0]] [S gY]'.

        R is the upper triangle of S'Y and D its diagonal, both in the order the pairs were added (oldest
        first); g is h_diag. Empty slots have s = y = 0 and a unit diagonal in R, so they add nothing.
        """
        hist = state["hist"]
        b, k = hist.shape[0], self._slots(state)
        s_k, y_k = hist[:, 0, :k], hist[:, 1, :k]
        arange = torch.arange(k, device=hist.device)
        order = (state["ptr"][:, None] + arange) % k  # slots, oldest first (empty ones before them)
        since = (arange - state["ptr"][:, None]) % k  # its inverse: slot -> position in `order`
        small = torch.float64  # k x k solves: float64 costs nothing here and R can be ill-conditioned
        a = torch.bmm(s_k, g.unsqueeze(2)).squeeze(2).gather(1, order).to(small).unsqueeze(2)
        bq = torch.bmm(y_k, g.unsqueeze(2)).squeeze(2).gather(1, order).to(small).unsqueeze(2)
        rows, cols = order[:, :, None].expand(b, k, k), order[:, None, :].expand(b, k, k)
        sy = state["sy"][:, :k, :k].gather(1, rows).gather(2, cols).to(small)
        yy = state["yy"][:, :k, :k].gather(1, rows).gather(2, cols).to(small)
        valid = state["valid"][:, :k].gather(1, order)
        gamma = state["h_diag"].to(small)[:, None, None]
        r = torch.where(torch.eye(k, dtype=torch.bool, device=hist.device) & ~valid[:, None, :], 1.0, sy.triu())
        u = torch.linalg.solve_triangular(r, a, upper=True)
        w = torch.diagonal(sy, dim1=1, dim2=2).unsqueeze(2) * u + gamma * (yy @ u - bq)
        top = torch.linalg.solve_triangular(r.transpose(1, 2), w, upper=False)
        coef_s = top.squeeze(2).gather(1, since).to(g.dtype).unsqueeze(1)
        coef_y = (-gamma.squeeze(2) * u.squeeze(2)).gather(1, since).to(g.dtype).unsqueeze(1)
        hg = torch.baddbmm((state["h_diag"][:, None] * g).unsqueeze(1), coef_s, s_k)
        return torch.baddbmm(hg, coef_y, y_k).squeeze(1)

    # ------------------------------------------------------------------ line search
    @staticmethod
    def _line_search(closure, p: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, d: torch.Tensor,
                     f0: torch.Tensor, gtd0: torch.Tensor, budget: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image strong-Wolfe search along d from x0 (torch's `_strong_wolfe`, one state machine per image).

        Returns the step lengths and how many evaluations each image used. Images that finish early are still
        evaluated with the others (at their final step), but their state no longer changes.
        """
        flat = p.view(x0.shape)

        def evaluate(step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            flat.copy_(torch.addcmul(x0, step[:, None], d))
            f = closure().detach()
            return f, (p.grad.reshape(d.shape) * d).sum(1)

        f_new, gtd_new = evaluate(t)
        evaluations = torch.ones_like(t)
        if budget == 1:  # torch's bracket [0, t] with no budget left: keep t if the loss fell
            return torch.where(f_new < f0, t, 0.0), evaluations

        max_ls = budget - 1
        d_norm = d.abs().amax(1)
        phase = torch.full_like(t, BRACKET, dtype=torch.long)
        extra = torch.zeros_like(phase)  # evaluations after the first (torch's ls_iter)
        t_prev, f_prev, gtd_prev = torch.zeros_like(t), f0.clone(), gtd0.clone()
        lo_t, lo_f, lo_gtd = torch.zeros_like(t), f0.clone(), gtd0.clone()  # the bracket's lower-loss end ...
        hi_t, hi_f, hi_gtd = torch.zeros_like(t), f0.clone(), gtd0.clone()  # ... and its other end
        insufficient = torch.zeros_like(phase, dtype=torch.bool)
        for _ in range(max_ls + 1):
            # 1. Judge the evaluation at t of every image still searching (an image whose loss or slope is not
            #    finite stops where it is: at the best point so far, t = 0 while bracketing).
            broken = ~(torch.isfinite(f_new) & torch.isfinite(gtd_new))
            armijo = f_new <= f0 + C1 * t * gtd0
            wolfe = gtd_new.abs() <= -C2 * gtd0
            spent = extra >= max_ls
            bracketing, zooming = (phase == BRACKET) & ~broken, (phase == ZOOM) & ~broken
            # bracketing: widen until the loss rises, the slope turns, or the Wolfe conditions hold
            exhausted = bracketing & spent
            rose = bracketing & ~spent & (~armijo | ((extra > 1) & (f_new >= f_prev)))
            found = bracketing & ~spent & ~rose & wolfe
            turned = bracketing & ~spent & ~rose & ~wolfe & (gtd_new >= 0)
            widen = bracketing & ~spent & ~rose & ~wolfe & (gtd_new < 0)
            to_zoom = rose | turned
            # zooming: shrink the bracket around a point that meets the Wolfe conditions
            high = zooming & (~armijo | (f_new >= lo_f))
            low = zooming & ~high
            flip = low & ~wolfe & (gtd_new * (hi_t - lo_t) >= 0)
            new, prev, zero = (t, f_new, gtd_new), (t_prev, f_prev, gtd_prev), (torch.zeros_like(t), f0, gtd0)
            lo, hi = (lo_t, lo_f, lo_gtd), (hi_t, hi_f, hi_gtd)
            prev_lower = f_prev <= f_new
            hi = _pick(flip, lo, hi)  # the old low end becomes the high end
            hi = _pick(to_zoom, _pick(prev_lower, new, prev), hi)
            lo = _pick(to_zoom, _pick(prev_lower, prev, new), lo)
            lo = _pick(found | low, new, lo)
            lo = _pick(exhausted, _pick(f0 <= f_new, zero, new), lo)
            hi = _pick(high, new, hi)
            swap = high & (hi[1] < lo[1])
            lo, hi = _pick(swap, hi, lo), _pick(swap, lo, hi)
            (lo_t, lo_f, lo_gtd), (hi_t, hi_f, hi_gtd) = lo, hi
            finished = found | exhausted | (low & wolfe) | (zooming & spent) | (broken & (phase != DONE))
            phase = torch.where(finished, DONE, torch.where(to_zoom, ZOOM, phase))

            # 2. Pick the next trial of every image still searching.
            t_wide = _cubic_minimum(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, t + 0.01 * (t - t_prev), t * 10)
            t_prev, f_prev, gtd_prev = _pick(widen, new, prev)
            zooming = phase == ZOOM
            left, right = torch.minimum(lo_t, hi_t), torch.maximum(lo_t, hi_t)
            narrow = zooming & ((right - left) * d_norm < BRACKET_EPS)
            phase = torch.where(narrow, DONE, phase)
            zooming = zooming & ~narrow
            t_zoom = _cubic_minimum(lo_t, lo_f, lo_gtd, hi_t, hi_f, hi_gtd, left, right)
            eps = 0.1 * (right - left)
            near_edge = torch.minimum(right - t_zoom, t_zoom - left) < eps
            at_edge = insufficient | (t_zoom >= right) | (t_zoom <= left)
            moved = near_edge & at_edge
            t_zoom = torch.where(moved, torch.where((t_zoom - right).abs() < (t_zoom - left).abs(), right - eps,
                                                    left + eps), t_zoom)
            insufficient = torch.where(zooming, near_edge & ~at_edge, insufficient)
            searching = phase != DONE
            if not bool(searching.any()):  # the one read from the device: once per extra evaluation
                break
            t = torch.where(widen & searching, t_wide, torch.where(zooming, t_zoom, lo_t))
            f_new, gtd_new = evaluate(t)
            evaluations = evaluations + searching
            extra = extra + searching
        return lo_t, evaluations


def _pick(mask: torch.Tensor, a: tuple, b: tuple) -> tuple:
    """Per image, the (t, f, g.d) triple `a` where `mask` holds, else `b`."""
    return tuple(torch.where(mask, x, y) for x, y in zip(a, b))


def _cubic_minimum(x1, f1, g1, x2, f2, g2, low, high):
    """The minimum of the cubic through (x1, f1, g1) and (x2, f2, g2), clamped to [low, high]; the middle of
    [low, high] where the cubic has none (torch's `_cubic_interpolate`, per image)."""
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 * d1 - g1 * g2
    d2 = d2_square.clamp_min(0).sqrt()
    forward = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    backward = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    at = torch.where(x1 <= x2, forward, backward)
    return torch.where(d2_square >= 0, torch.minimum(torch.maximum(at, low), high), (low + high) / 2)
